"""A tabulated SchNet's blocks and readout as one registered op, ``gnnmd::tabulated_network``.

Per-bead energies (N,) kJ/mol from features x0 (N, H), pairs (2, E) i<j and distances (E,) nm::

    for each block:  x <- x + act(conv(x W_in2f^T) W_f2out^T + b_f2out) W_dense^T + b_dense
    readout:         e = (act_r(... act_r(x W_1^T + b_1) ...)) W_L^T + b_L

with ``conv`` the block's spline filters (:mod:`gnnmd.kernels.tabulated`). The op (C++,
``csrc/tabulated_network.cpp``) keeps what its gradient needs and differentiates the whole
network in one autograd node, so a small molecule's step is a few dozen matrix products and
convolutions instead of some 150 torch ops with their autograd bookkeeping (see
benchmarks/RESULTS.md). First derivatives only, with respect to x0 and the distances; the
weights are fixed. :class:`TabulatedNetwork` is its pure-torch twin.

The network's side reads a :class:`NetworkRecord` off its modules (plain tensors and names,
:func:`gnnmd.nn.filter_record.network_record`) and :func:`gnnmd.nn.backends.use_backend` installs
the op; nothing here imports the network's classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gnnmd.kernels.filter_spec import activation
from gnnmd.kernels.reference import aggregate_pairs
from gnnmd.kernels.tabulated import evaluate_spline

#: Tensors per block in :attr:`NetworkRecord.blocks`, in this order.
BLOCK_TENSORS = ("in2f_weight", "f2out_weight", "f2out_bias", "dense_weight", "dense_bias", "coefficients")


@dataclass(frozen=True)
class NetworkRecord:
    """A tabulated network's blocks and readout as plain values.

    Attributes:
        blocks: per block, :data:`BLOCK_TENSORS`: W_in2f (F, H), W_f2out (H, F), b_f2out (H,),
            W_dense (H, H), b_dense (H,), spline coefficients (S, 4, F).
        inv_spacings: per block, segments per nm of its spline grid.
        cutoffs_nm: per block, where its filter ends.
        readout: (W_1, b_1, ..., W_L, b_L), W_L of one row.
        act / readout_act: activation names (:data:`gnnmd.kernels.filter_spec.ACTIVATIONS`).
    """

    blocks: list[list[Tensor]]
    inv_spacings: list[float]
    cutoffs_nm: list[float]
    readout: list[Tensor]
    act: str
    readout_act: str


def _fixed(tensors: list[Tensor]) -> list[Tensor]:
    return [t.detach().clone().contiguous() for t in tensors]


class NativeTabulatedNetwork(nn.Module):
    """The network of a :class:`NetworkRecord` through ``torch.ops.gnnmd.tabulated_network`` (CPU)."""

    implementation = "native-cpu"

    def __init__(self, record: NetworkRecord) -> None:
        super().__init__()
        self.blocks = _fixed([t for block in record.blocks for t in block])
        self.readout = _fixed(record.readout)
        self.inv_spacings = [float(v) for v in record.inv_spacings]
        self.cutoffs_nm = [float(v) for v in record.cutoffs_nm]
        self.act = record.act
        self.readout_act = record.readout_act

    @torch.jit.ignore
    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # The weights are plain lists (one op argument each), so .to() and .double() reach them here.
        # A float16 spline table (tabulated16) stays float16, as in TabulatedKernel._apply.
        self.blocks = [t2.to(torch.float16) if t.dtype == torch.float16 else t2
                       for t, t2 in ((t, fn(t)) for t in self.blocks)]  # fmt: skip
        self.readout = [fn(t) for t in self.readout]
        return super()._apply(fn, recurse)

    def forward(self, x: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """(N,) energies kJ/mol from (N, H) features, (2, E) pairs i<j and (E,) distances nm."""
        return torch.ops.gnnmd.tabulated_network(
            x, pairs, distances, self.blocks, self.inv_spacings, self.cutoffs_nm, self.readout,
            self.act, self.readout_act,
        )  # fmt: skip


class TabulatedNetwork(NativeTabulatedNetwork):
    """The same function in plain torch (autograd differentiates it): the op's twin."""

    implementation = "torch"

    def forward(self, x: Tensor, pairs: Tensor, distances: Tensor) -> Tensor:
        """(N,) energies kJ/mol from (N, H) features, (2, E) pairs i<j and (E,) distances nm."""
        act, readout_act = activation(self.act), activation(self.readout_act)
        per_block = len(BLOCK_TENSORS)
        for k in range(len(self.inv_spacings)):
            w_in, w_f, b_f, w_d, b_d, table = self.blocks[k * per_block : (k + 1) * per_block]
            filters = evaluate_spline(table, self.inv_spacings[k], self.cutoffs_nm[k], distances)
            messages = aggregate_pairs(x @ w_in.T, filters, pairs)
            x = x + act(messages @ w_f.T + b_f) @ w_d.T + b_d
        for layer in range(len(self.readout) // 2 - 1):
            x = readout_act(x @ self.readout[2 * layer].T + self.readout[2 * layer + 1])
        return (x @ self.readout[-2].T + self.readout[-1]).squeeze(-1)
