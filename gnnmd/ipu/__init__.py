"""Graphcore IPUs and ONNX: the static-shape model (:mod:`gnnmd.static`) on other runtimes.

:mod:`gnnmd.ipu.poptorch_backend` wraps the static model for Graphcore IPUs
(``--device ipu``) as a force provider for the replica runner;
:mod:`gnnmd.ipu.onnx_export` writes it as ONNX. See docs/ipu.md.
"""
