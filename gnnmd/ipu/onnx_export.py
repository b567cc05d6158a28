"""ONNX export of the static-shape model: energies, forces and pair counts in one graph.

ONNX is what Graphcore's PopART (and TensorRT, ONNX Runtime...) consumes. The
static model computes forces with ``torch.autograd.grad``, which
``torch.export`` cannot trace (ops whose backward reuses their output, such as
tanh and sqrt, come out as constants: pytorch/pytorch#120820, #125984). So the
model is first traced with ``make_fx``, which records the forward and the
backward as plain aten ops (static shapes make the trace valid for every
input), and that graph is exported. ``aten.searchsorted`` (the priors' parameter
lookup) has no ONNX translation; it is written as a comparison and a sum.

The file is float32 (ONNX Runtime has no float64 ``Atan``; IPUs have no
float64) and self-contained, with the layout baked in: one input
``positions`` (S, L, 3) nm, outputs ``energies`` (S, G) kJ/mol, ``forces``
(S, L, 3) kJ/mol/nm and ``pair_counts`` (S,) int64. Opset 18.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from gnnmd.errors import GnnmdError
from gnnmd.static.model import StaticPotential

OUTPUT_NAMES = ("energies", "forces", "pair_counts")


class _Energies(nn.Module):
    """The static model without forces: (energies, pair_counts)."""

    def __init__(self, model: StaticPotential) -> None:
        super().__init__()
        self.model = model

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.energies(positions)


def _translations() -> dict:
    """ONNX for aten.searchsorted on a 1-D table, left side: the count of table entries below each value."""
    import onnx
    from onnxscript import opset18 as op
    from onnxscript.function_libs.torch_lib.tensor_typing import TInt, TReal

    def searchsorted(sorted_sequence, self, out_int32=False, right=False, side=None, sorter=None):
        if right or side == "right" or sorter is not None or out_int32:
            raise NotImplementedError("only searchsorted(table, values) of the left side is translated")
        below = op.Less(op.Unsqueeze(sorted_sequence, [0]), op.Unsqueeze(self, [-1]))
        return op.ReduceSum(op.Cast(below, to=onnx.TensorProto.INT64), [-1], keepdims=0)

    # Real types (not strings): the exporter reads them to tell tensor inputs from attributes.
    searchsorted.__annotations__ = {
        "sorted_sequence": TReal, "self": TReal, "out_int32": bool, "right": bool,
        "side": Optional[str], "sorter": Optional[TInt], "return": TInt,
    }  # fmt: skip
    return {torch.ops.aten.searchsorted.Tensor: searchsorted}


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines and notes (lifted constants, torchvision, empty attributes)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(
    model: StaticPotential, positions: Tensor, path: str | os.PathLike, forces: bool = True
) -> Path:
    """Write ``model`` as a float32 ONNX file.

    Args:
        model: the static model (not modified: a float32 copy is traced).
        positions: (S, L, 3) nm example positions (any values: shapes fix the graph).
        path: the .onnx file to write.
        forces: include forces (default); False writes energies and pair counts only.
    Returns:
        ``path``. Raises GnnmdError if the onnx or onnxscript package is missing.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise GnnmdError(f"ONNX export needs the onnx and onnxscript packages ({error}); "
                         "pip install onnx onnxscript") from error  # fmt: skip
    traced = copy.deepcopy(model).float().eval()
    module = traced if forces else _Energies(traced)
    example = positions.detach().to(torch.float32)
    graph = make_fx(module)(example)
    names = OUTPUT_NAMES if forces else (OUTPUT_NAMES[0], OUTPUT_NAMES[2])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        torch.onnx.export(
            graph, (example,), str(path), dynamo=True, external_data=False, verbose=False,
            input_names=["positions"], output_names=list(names),
            custom_translation_table=_translations(),
        )  # fmt: skip
    return path


def run_onnx(path: str | os.PathLike, positions: Tensor) -> dict[str, Tensor]:
    """Run an exported file in ONNX Runtime (CPU); returns its outputs by name as torch tensors.

    Args:
        path: a file from :func:`export_onnx`.
        positions: (S, L, 3) nm.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise GnnmdError(f"running ONNX files needs onnxruntime ({error}); pip install onnxruntime") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: positions.detach().to(torch.float32).cpu().numpy()}
    names = [output.name for output in session.get_outputs()]
    return {name: torch.from_numpy(value) for name, value in zip(names, session.run(None, feed), strict=True)}
