"""openmm may be imported before or after gnnmd; TorchForce works either way."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = """
{first}
{second}
import openmm, openmmtorch, torch

class Square(torch.nn.Module):
    def forward(self, positions):
        return (positions ** 2).sum()

torch.jit.script(Square()).save({path!r})
system = openmm.System()
system.addParticle(12.0)
system.addForce(openmmtorch.TorchForce({path!r}))
platform = openmm.Platform.getPlatformByName("Reference")
context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
context.setPositions([[0.1, 0.2, 0.3]])
print("energy", context.getState(getEnergy=True).getPotentialEnergy()._value)
"""


@pytest.mark.parametrize("order", [("import openmm", "import gnnmd"), ("import gnnmd", "import openmm")])
def test_torchforce_works_in_either_import_order(order, tmp_path):
    script = SCRIPT.format(first=order[0], second=order[1], path=str(tmp_path / "square.pt"))
    path = tmp_path / "run.py"  # TorchScript needs the class source on disk, not `python -c`
    path.write_text(textwrap.dedent(script))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "energy 0.14" in result.stdout


def test_importing_gnnmd_changes_no_global_torch_state():
    code = (
        "import torch; d = torch.get_default_dtype(); import gnnmd, gnnmd.models, gnnmd.sim; "
        "print(torch.get_default_dtype() == d)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr[-2000:]


def test_control_without_gnnmd_the_trap_is_real(tmp_path):
    """Without gnnmd's repair, openmm-before-torch breaks TorchForce: the test above is not vacuous."""
    script = SCRIPT.format(first="import openmm", second="import torch", path=str(tmp_path / "square.pt"))
    path = tmp_path / "run.py"
    path.write_text(textwrap.dedent(script))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "does not support all required kernels" in result.stderr
