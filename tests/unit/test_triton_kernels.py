"""The Triton kernels' arithmetic, checked on the CPU by Triton's interpreter (CI has no GPU).

Each kernel runs in a subprocess with TRITON_INTERPRET=1 (the variable must be
set before Triton is imported) on small graphs with graphs of different sizes,
isolated beads, pairs beyond the cutoff and an empty pair list, against the
pure-torch path of the same kernel module. Tolerances, relative to the largest
reference value: float32 1e-5; float16 weights 1e-4 (the Triton and torch paths
round the same 16-bit inputs but accumulate in different orders). bfloat16 is not
run here: the interpreter (numpy) has no bfloat16 type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    output = tmp_path_factory.mktemp("triton") / "results.json"
    environment = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(HERE / "triton_interpreted.py"), str(output)],
        capture_output=True, text=True, timeout=600, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(output.read_text())


@pytest.mark.parametrize(
    ("case", "tolerance"),
    [("fused-tanh-gaussian", 1e-5), ("fused-ssp-expnormal", 1e-5), ("fused-silu-gaussian", 1e-5),
     ("fused16-float16", 1e-4), ("tabulated", 1e-5), ("tabulated-empty", 0.0)],
)  # fmt: skip
def test_kernel_matches_torch_path(interpreted, case, tolerance):
    errors = interpreted[case]
    assert set(errors) == {"messages", "features", "distances"}
    for quantity, error in errors.items():
        assert error <= tolerance, f"{case} {quantity}: {error:.2e} > {tolerance:.0e}"


def test_ops_are_registered_with_torch_library(interpreted):
    assert interpreted["registered_ops"] == [
        "fused_edge_grads", "fused_rows", "tabulated_edge_grads", "tabulated_rows"
    ]  # fmt: skip
