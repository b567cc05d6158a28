"""The kernels' custom autograd functions: float64 gradcheck of their first derivatives, and a clear
refusal of second derivatives (which ``once_differentiable`` would have given as silent zeros).

The chunked kernel runs here (the C++ op has its own tests, test_ops.py); the Triton kernel runs
in a subprocess under
TRITON_INTERPRET=1 (``triton_gradcheck.py``). Inputs: two graphs and an isolated bead, distances
inside the cutoff; gradcheck's central differences with eps 1e-6, atol 1e-7, rtol 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gnnmd.kernels.fused import FusedKernel, _ChunkedConv
from gnnmd.nn.schnet import SchNet
from tests.unit.test_triton_kernels import run_interpreted

HERE = Path(__file__).parent
SECOND_DERIVATIVE = "gives first derivatives only"


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    net = SchNet(4, hidden_channels=4, num_filters=4, num_interactions=1, num_rbf=6, cutoff_nm=1.0,
                 rbf="gaussian", act="tanh").double()  # fmt: skip
    pairs = torch.cat(
        [torch.combinations(torch.arange(4), 2).t(), torch.combinations(torch.arange(3), 2).t() + 4], 1
    ).contiguous()
    generator = torch.Generator().manual_seed(1)
    distances = 0.1 + 0.8 * torch.rand(pairs.shape[1], generator=generator, dtype=torch.float64)
    features = torch.randn(8, 4, generator=generator, dtype=torch.float64)  # bead 7 has no pairs
    return net, pairs, distances, features


def check(call, distances, features) -> None:
    h, r = features.clone().requires_grad_(True), distances.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(call, (h, r), eps=1e-6, atol=1e-7, rtol=1e-5)
    with pytest.raises(RuntimeError, match=SECOND_DERIVATIVE):
        torch.autograd.gradgradcheck(call, (h, r))


def test_chunked_fused_conv(graph):
    net, pairs, distances, features = graph
    kernel = FusedKernel(net.filter_records()[0]).requires_grad_(False)
    kernel.chunk_pairs = 4  # several chunks
    check(lambda h, r: _ChunkedConv.apply(h, pairs, r, kernel), distances, features)


def test_triton_conv_under_the_interpreter(tmp_path):
    results = run_interpreted("triton_gradcheck.py", tmp_path / "gradcheck.json")
    assert sorted(results) == ["fused", "tabulated"]
    for name, outcome in results.items():
        assert outcome["gradcheck"], name
        assert SECOND_DERIVATIVE in outcome["second_derivative_error"], (name, outcome)
