"""Triton kernels of the ``fused``, ``fused16`` and ``tabulated`` backends (CUDA; CPU when interpreted).

One op per file: :mod:`.tabulated` (spline filters), :mod:`.fused` (the exact filter network);
what they share (CSR layout, edge tile, launcher, autograd formula) is in :mod:`.common`.

Layout: the E unordered pairs become 2E directed edges sorted by destination
(CSR: ``rowptr``, ``col``, ``edge``). One program per bead walks its edges in
tiles of ``BLOCK_E`` and reduces the messages in registers, so the forward pass
writes each bead's message once, with no atomics and no edges × features
tensor. The backward pass needs

- ∂E/∂h_j = Σ_i W_ij ⊙ g_i: the forward kernel applied to g (W is symmetric);
- ∂E/∂r_ij: one scalar per directed edge (dest i: Σ_c ∂W_c/∂r · g_ic h_jc),
  the two directions of a pair summed by a gather (``position``), no atomics.

The ops are registered with ``torch.library.triton_op`` so they compose with
``torch.compile`` and CUDA graphs, and get their backward through
``register_autograd``. ``TRITON_INTERPRET=1`` runs them on CPU tensors (slowly),
which is how the test suite checks their arithmetic without a GPU.

Units: distances in nm; filters dimensionless.
"""

from gnnmd.kernels.triton_kernels.common import available, csr_edges, interpreted
from gnnmd.kernels.triton_kernels.fused import fused_conv, fused_unsupported, fused_weights
from gnnmd.kernels.triton_kernels.tabulated import tabulated_conv

__all__ = ["available", "csr_edges", "fused_conv", "fused_unsupported", "fused_weights", "interpreted",
           "tabulated_conv"]  # fmt: skip
