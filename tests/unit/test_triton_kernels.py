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


def run_interpreted(script: str, output: Path) -> dict:
    """Run a helper script of this folder under TRITON_INTERPRET=1 (set before Triton is imported)."""
    environment = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(HERE / script), str(output)],
        capture_output=True, text=True, timeout=600, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(output.read_text())


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    return run_interpreted("triton_interpreted.py", tmp_path_factory.mktemp("triton") / "results.json")


@pytest.mark.parametrize(
    ("case", "tolerance"),
    [("fused-tanh-gaussian", 1e-5), ("fused-ssp-expnormal", 1e-5), ("fused-silu-gaussian", 1e-5),
     ("fused-tanh-gaussian-enveloped", 1e-5), ("fused-silu-expnormal-enveloped", 1e-5),
     ("fused16-float16", 1e-4), ("tabulated", 1e-5), ("tabulated-empty", 0.0)],
)  # fmt: skip
def test_kernel_matches_torch_path(interpreted, case, tolerance):
    errors = interpreted[case]
    assert set(errors) == {"messages", "features", "distances"}
    for quantity, error in errors.items():
        assert error <= tolerance, f"{case} {quantity}: {error:.2e} > {tolerance:.0e}"


def test_ops_are_registered_with_torch_library(interpreted):
    assert interpreted["registered_ops"] == [
        "fused_edge_grads", "fused_rows", "philox_bits_triton", "tabulated_edge_grads", "tabulated_rows"
    ]  # fmt: skip


def test_the_tabulated_op_has_triton_cuda_kernels_under_its_own_name(interpreted):
    """gnnmd::tabulated_conv and its backward: CUDA kernels registered, equal to the C++ CPU kernel."""
    case = interpreted["tabulated-op-cuda-kernel"]
    assert case["registered"] == [True, True]
    for quantity in ("messages", "features", "distances"):
        assert case[quantity] <= 1e-5, f"{quantity}: {case[quantity]:.2e}"
    assert "float32 Triton kernel" in case["float64"]
    half = interpreted["tabulated16-op-cuda-kernel"]  # float16 tables: widened on CUDA, read on CPU
    for quantity in ("messages", "features", "distances"):
        assert half[quantity] <= 1e-5, f"tabulated16 {quantity}: {half[quantity]:.2e}"


def test_philox_bits_on_triton_equal_the_torch_twin(interpreted):
    """Every bit of 4 x 1,000 counters (partial last block, steps past 2^32), and Random123's zero vector."""
    assert interpreted["philox"] == {
        "mismatches": 0, "empty": [0, 2], "zero_known_answer": [0x6627E8D5, 0xE169C58D]
    }  # fmt: skip


def _signature(kernel, pointers: dict, scalars: dict, constants: dict) -> dict:
    """Triton types of ``kernel``'s arguments: pointers by name (default *fp32), scalars, constexprs."""
    names = kernel.arg_names
    signature = {}
    for name in names:
        if name in constants:
            signature[name] = "constexpr"
        elif name in scalars:
            signature[name] = scalars[name]
        else:
            signature[name] = pointers.get(name, "*fp32")
    return signature


@pytest.mark.parametrize("weights", ["fp32", "fp16", "bf16"])
def test_kernels_compile_for_hopper(weights):
    """Compiled (not interpreted) to an sm_90 cubin without a GPU: types, shapes and tl.dot
    operands are valid for the real compiler, bfloat16 included."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gnnmd.kernels.triton_kernels import fused as fused_op
    from gnnmd.kernels.triton_kernels import philox as philox_op
    from gnnmd.kernels.triton_kernels import tabulated as tabulated_op

    indices = {"rowptr": "*i64", "col": "*i64", "edge": "*i64"}
    target = GPUTarget("cuda", 90, 32)
    half = weights != "fp32"
    fused = {
        "K": 128,
        "F": 128,
        "BLOCK_K": 128,
        "BLOCK_F": 128,
        "BLOCK": 32,
        "ACT": 0,
        "BASIS": 0,
        "HALF": half,
    }
    weight_pointers = {"w1": f"*{weights}", "w2": f"*{weights}"}
    fused_scalars = {"alpha": "fp32", "cutoff": "fp32"}
    kernels = [
        (fused_op._fused_rows, {**indices, **weight_pointers}, fused_scalars, fused),
        (fused_op._fused_edge_grads, {**indices, **weight_pointers}, fused_scalars, fused),
    ]
    if not half:
        tabulated = {"F": 128, "BLOCK_F": 128, "BLOCK": 32}
        scalars = {"cutoff": "fp32", "inv_spacing": "fp32", "segments": "i32"}
        kernels += [(tabulated_op._tabulated_rows, indices, scalars, tabulated),
                    (tabulated_op._tabulated_edge_grads, indices, scalars, tabulated)]  # fmt: skip
        philox_pointers = {"lanes": "*i64", "step": "*i64", "constants": "*i64", "out": "*i64"}
        kernels.append((philox_op._philox_bits, philox_pointers, {"count": "i32"}, {"BLOCK": 256}))
    for kernel, pointers, scalars, constants in kernels:
        source = ASTSource(kernel, _signature(kernel, pointers, scalars, constants), constexprs=constants)
        compiled = triton.compile(source, target=target)
        assert "cubin" in compiled.asm and compiled.metadata.shared >= 0, kernel.__name__
