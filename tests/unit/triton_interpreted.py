"""Helper for test_triton_kernels: runs the Triton kernels under TRITON_INTERPRET=1 on the CPU.

python triton_interpreted.py OUT.json
Writes, per case, the largest differences between the Triton ops and the
pure-torch path of the same kernel module: messages, ∂/∂features, ∂/∂distances.
"""

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402

from gnnmd.kernels import ops, triton_kernels  # noqa: E402
from gnnmd.kernels.fused import FusedKernel  # noqa: E402
from gnnmd.kernels.philox import philox_bits  # noqa: E402
from gnnmd.kernels.reference import aggregate_pairs  # noqa: E402
from gnnmd.kernels.tabulated import TabulatedKernel, tabulate_block  # noqa: E402
from gnnmd.nn.schnet import SchNet  # noqa: E402

torch.set_num_threads(1)
CUTOFF = 1.0


def graph(sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pairs i<j within each graph of the given sizes; distances in [0, 1.3 r_c) (some beyond r_c)."""
    generator = torch.Generator().manual_seed(seed)
    blocks, offset = [], 0
    for size in sizes:
        blocks.append(torch.combinations(torch.arange(size), 2).t() + offset)
        offset += size
    pairs = torch.cat(blocks, dim=1) if blocks else torch.zeros(2, 0, dtype=torch.int64)
    distances = torch.rand(pairs.shape[1], generator=generator, dtype=torch.float32) * 1.3 * CUTOFF
    return pairs.contiguous(), distances, offset


def compare(kernel, triton_call, sizes, features: int, seed: int) -> dict:
    pairs, distances, nodes = graph(sizes, seed)
    nodes += 2  # two isolated beads at the end: no pairs at all
    generator = torch.Generator().manual_seed(seed + 1)
    h = torch.randn(nodes, features, generator=generator).requires_grad_(True)
    r = distances.clone().requires_grad_(True)
    upstream = torch.randn(nodes, features, generator=generator)
    expected = aggregate_pairs(h, kernel.filters(r), pairs)
    got = triton_call(h, pairs, r)
    expected_grads = torch.autograd.grad(expected, (h, r), upstream, allow_unused=True)
    got_grads = torch.autograd.grad(got, (h, r), upstream, allow_unused=True)
    scale = [float(expected.detach().abs().max().clamp_min(1e-6))] + [
        float(g.abs().max().clamp_min(1e-6)) if g is not None and g.numel() else 1.0 for g in expected_grads
    ]

    def difference(a, b):
        if a is None or b is None or a.numel() == 0:
            return 0.0
        return float((a - b).detach().abs().max())

    return {
        "messages": difference(got, expected) / scale[0],
        "features": difference(got_grads[0], expected_grads[0]) / scale[1],
        "distances": difference(got_grads[1], expected_grads[1]) / scale[2],
    }


def network(act: str, rbf: str, features: int = 16, enveloped: bool = False) -> SchNet:
    torch.manual_seed(0)
    return SchNet(4, hidden_channels=features, num_filters=features, num_interactions=1, num_rbf=20,
                  cutoff_nm=CUTOFF, rbf=rbf, act=act, rbf_envelope=enveloped)  # fmt: skip


results = {}
FUSED_CASES = (("tanh", "gaussian", False), ("ssp", "expnormal", False), ("silu", "gaussian", False),
               ("tanh", "gaussian", True), ("silu", "expnormal", True))  # fmt: skip
for act, rbf, enveloped in FUSED_CASES:
    net = network(act, rbf, enveloped=enveloped)
    kernel = FusedKernel(net.filter_records()[0]).requires_grad_(False)
    results[f"fused-{act}-{rbf}" + ("-enveloped" if enveloped else "")] = compare(
        kernel, lambda h, p, r, k=kernel: triton_kernels.fused_conv(h, p, r, k), [9, 4, 1], 16, seed=1
    )
net = network("tanh", "gaussian")
half = FusedKernel(net.filter_records()[0], weight_dtype=torch.float16)
half.requires_grad_(False)
results["fused16-float16"] = compare(
    half, lambda h, p, r: triton_kernels.fused_conv(h, p, r, half), [9, 4], 16, seed=2
)
coefficients, _ = tabulate_block(net.filter_records()[0])
table = TabulatedKernel(coefficients.float(), CUTOFF)
results["tabulated"] = compare(
    table,
    lambda h, p, r: triton_kernels.tabulated_conv(h, p, r, table.coefficients, table.inv_spacing, CUTOFF),
    [9, 4, 1],
    16,
    seed=3,
)
results["tabulated-empty"] = compare(
    table,
    lambda h, p, r: triton_kernels.tabulated_conv(h, p, r, table.coefficients, table.inv_spacing, CUTOFF),
    [],
    16,
    seed=4,
)
# gnnmd::tabulated_conv's CUDA kernels (Triton, registered under the op's own name) against its
# CPU kernel (C++): the same arguments, forward and backward, on CPU tensors under the interpreter.
ops.load()
triton_kernels.tabulated.register_cuda_kernels()
pairs, distances, nodes = graph([9, 4, 1], seed=6)
h = torch.randn(nodes + 2, 16, generator=torch.Generator().manual_seed(7))
g = torch.randn(nodes + 2, 16, generator=torch.Generator().manual_seed(8))
op_args = (pairs, distances, table.coefficients.float(), table.inv_spacing, CUTOFF)
native = torch.ops.gnnmd.tabulated_conv.default(h, *op_args)
native_h, native_r = torch.ops.gnnmd.tabulated_conv_backward.default(g, h, *op_args)
cuda_h, cuda_r = triton_kernels.tabulated.conv_backward(g, h, *op_args)
cuda_messages = triton_kernels.tabulated.conv_rows(h, *op_args)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


results["tabulated-op-cuda-kernel"] = {
    "registered": [torch._C._dispatch_has_kernel_for_dispatch_key(f"gnnmd::{name}", "CUDA")
                   for name in ("tabulated_conv", "tabulated_conv_backward")],
    "messages": relative(cuda_messages, native),
    "features": relative(cuda_h, native_h),
    "distances": relative(cuda_r, native_r),
}  # fmt: skip
# A float16 table (tabulated16): the CUDA kernels widen it; the CPU kernel reads it as float16.
half_args = (pairs, distances, table.coefficients.half(), table.inv_spacing, CUTOFF)
half_h, half_r = torch.ops.gnnmd.tabulated_conv_backward.default(g, h, *half_args)
half_cuda_h, half_cuda_r = triton_kernels.tabulated.conv_backward(g, h, *half_args)
results["tabulated16-op-cuda-kernel"] = {
    "messages": relative(triton_kernels.tabulated.conv_rows(h, *half_args),
                         torch.ops.gnnmd.tabulated_conv.default(h, *half_args)),
    "features": relative(half_cuda_h, half_h),
    "distances": relative(half_cuda_r, half_r),
}  # fmt: skip
try:
    triton_kernels.tabulated.conv_rows(h.double(), pairs, distances.double(), table.coefficients, 2.0, 1.0)
except RuntimeError as error:
    results["tabulated-op-cuda-kernel"]["float64"] = str(error)

# Philox bits: the Triton op against the pure-torch twin, bit for bit (both words of the step, an
# element count that leaves a partial block, Random123's zero known answer, an empty batch).
lanes = torch.randint(0, 2**32, (1000, 2), generator=torch.Generator().manual_seed(5))
lanes[0] = 0
mismatches = 0
for step, key in ((0, (0, 0)), (7, (123, 456)), (2**33 + 5, (2**32 - 1, 9)), (2**62 + 1, (5, 2**31))):
    got = philox_bits(lanes, step, *key, "triton-cuda")
    mismatches += int((got != philox_bits(lanes, step, *key, "torch")).sum())
empty = philox_bits(lanes[:0], 3, 1, 2, "triton-cuda")
first = philox_bits(lanes[:1], 0, 0, 0, "triton-cuda")[0].tolist()
results["philox"] = {"mismatches": mismatches, "empty": list(empty.shape), "zero_known_answer": first}
results["registered_ops"] = sorted(
    name for name in ("tabulated_rows", "tabulated_edge_grads", "fused_rows", "fused_edge_grads",
                      "philox_bits_triton")
    if hasattr(torch.ops.gnnmd, name)
)  # fmt: skip
with open(sys.argv[1], "w") as handle:
    json.dump(results, handle, indent=1)
