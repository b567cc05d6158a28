"""Helper for test_autograd_functions: gradcheck of the Triton autograd function under TRITON_INTERPRET=1.

python triton_gradcheck.py OUT.json
Writes, per kernel, whether float64 gradcheck passed (∂/∂features and ∂/∂distances
against central differences), and the error a second derivative raises.
"""

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402

from gnnmd.kernels import triton_kernels  # noqa: E402
from gnnmd.kernels.fused import FusedKernel  # noqa: E402
from gnnmd.kernels.tabulated import tabulate_block  # noqa: E402
from gnnmd.nn.schnet import SchNet  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
net = SchNet(4, hidden_channels=4, num_filters=4, num_interactions=1, num_rbf=6, cutoff_nm=1.0,
             rbf="gaussian", act="tanh").double()  # fmt: skip
fused = FusedKernel(net.filter_records()[0]).requires_grad_(False)
coefficients, _ = tabulate_block(net.filter_records()[0], points=64)
coefficients = coefficients.double().contiguous()
inv_spacing = coefficients.shape[0] / 1.0
# Two graphs (4 and 3 beads) and an isolated bead; distances inside the cutoff, away from its edge.
pairs = torch.cat(
    [torch.combinations(torch.arange(4), 2).t(), torch.combinations(torch.arange(3), 2).t() + 4], 1
)
pairs = pairs.contiguous()
generator = torch.Generator().manual_seed(1)
distances = 0.1 + 0.8 * torch.rand(pairs.shape[1], generator=generator, dtype=torch.float64)
features = torch.randn(8, 4, generator=generator, dtype=torch.float64)
calls = {
    "fused": lambda h, r: triton_kernels.fused_conv(h, pairs, r, fused),
    "tabulated": lambda h, r: triton_kernels.tabulated_conv(h, pairs, r, coefficients, inv_spacing, 1.0),
}
results = {}
for name, call in calls.items():
    h, r = features.clone().requires_grad_(True), distances.clone().requires_grad_(True)
    passed = torch.autograd.gradcheck(call, (h, r), eps=1e-6, atol=1e-7, rtol=1e-5)
    try:
        torch.autograd.gradgradcheck(call, (h, r))
        second = ""
    except RuntimeError as error:
        second = str(error)
    results[name] = {"gradcheck": bool(passed), "second_derivative_error": second}
with open(sys.argv[1], "w") as handle:
    json.dump(results, handle, indent=2)
