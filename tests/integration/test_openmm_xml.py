"""XML: serialize -> deserialize keeps the forces; `gnnmd openmm-xml` set-ups run in plain OpenMM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.unit
import pytest

from gnnmd.cli import main
from gnnmd.openmm import PlatformSpec, create_system
from tests.conftest import load_script, perturbed
from tests.integration.test_openmm_forces import evaluate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openmm_xml"


def load_writer():
    return load_script(EXAMPLE / "write_setup.py")


@pytest.mark.parametrize("route", ["torch", "python"])
def test_xml_round_trip_keeps_the_forces(small_model, chignolin, route):
    system = create_system(
        chignolin.topology, small_model, route=route, replicas=2, platform=PlatformSpec("CPU", "double")
    )
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    x = np.concatenate([perturbed(chignolin.positions_nm, seed=s).numpy() for s in (4, 5)])
    energy, forces = evaluate(system, x)
    energy_copy, forces_copy = evaluate(copy, x)
    np.testing.assert_allclose(forces_copy, forces, rtol=1e-12, atol=1e-12)
    assert energy_copy == pytest.approx(energy, rel=1e-12)
    assert np.abs(forces).max() > 1.0
    masses = [copy.getParticleMass(i).value_in_unit(openmm.unit.amu) for i in range(copy.getNumParticles())]
    np.testing.assert_allclose(masses, np.tile(chignolin.topology.masses_amu, 2))


@pytest.fixture()
def poisoned_gnnmd(tmp_path) -> Path:
    """A folder holding a ``gnnmd`` package that fails on import: put first on PYTHONPATH."""
    package = tmp_path / "poison" / "gnnmd"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the plain OpenMM runner imported gnnmd')\n")
    return package.parent


def test_openmm_xml_setup_runs_in_plain_openmm(chignolin, tmp_path, poisoned_gnnmd):
    """write_setup.py (runs `gnnmd openmm-xml`), then the set-up's own run.py without gnnmd."""
    out = tmp_path / "setup"
    assert load_writer().main(["--system", "chignolin", "--replicas", "2", "--out", str(out)]) == 0
    provenance = json.loads((out / "gnnmd-setup.json").read_text())
    assert provenance["particles"] == 2 * chignolin.topology.n_beads and provenance["trained"] is False

    # The set-up's own forces equal a freshly built gnnmd System's at the saved state.
    state = openmm.XmlSerializer.deserialize((out / "state.xml").read_text())
    positions = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    np.testing.assert_allclose(positions, np.tile(chignolin.positions_nm, (2, 1)), atol=1e-12)
    system = openmm.XmlSerializer.deserialize((out / "system.xml").read_text())
    _, forces = evaluate(system, positions)
    _, expected = evaluate(
        create_system(chignolin.topology, "default", replicas=2, platform="CPU"), positions
    )
    np.testing.assert_allclose(forces, expected, rtol=1e-6, atol=1e-5)

    # One torch thread: see the one_torch_thread fixture.
    environment = {**os.environ, "PYTHONPATH": str(poisoned_gnnmd), "OMP_NUM_THREADS": "1"}
    assert "Import `torch` before `openmm`" in (out / "README.md").read_text()
    command = [sys.executable, str(out / "run.py"), "--steps", "20", "--every", "10"]
    completed = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert "20 steps of 98 particles" in completed.stdout
    frames = mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "cg.pdb"))
    assert frames.n_frames == 2 and frames.n_atoms == 98
    assert np.isfinite(frames.xyz).all()


def test_poisoned_gnnmd_really_blocks_the_import(tmp_path, poisoned_gnnmd):
    """The check above means something: with the poison on the path, importing gnnmd fails."""
    environment = {**os.environ, "PYTHONPATH": str(poisoned_gnnmd)}
    completed = subprocess.run([sys.executable, "-c", "import gnnmd"], cwd=tmp_path, env=environment,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert completed.returncode != 0 and "imported gnnmd" in completed.stderr


def test_openmm_xml_cli_refuses_bad_input(tmp_path, capsys):
    assert main(["openmm-xml", "no-such-system", "-o", str(tmp_path / "a")]) == 2
    assert "no-such-system" in capsys.readouterr().err
    assert main(["openmm-xml", "chignolin", "--model", "no-such-model", "-o", str(tmp_path / "b")]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


PLAIN_OPENMM = """
import sys
import numpy as np
import torch
if sys.argv[2] != "-":
    torch.ops.load_library(sys.argv[2])  # the one extra line a tabulated set-up needs
import openmm, openmmtorch  # noqa: E401, F401
folder = sys.argv[1]
system = openmm.XmlSerializer.deserialize(open(folder + "/system.xml").read())
state = openmm.XmlSerializer.deserialize(open(folder + "/state.xml").read())
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
context.setPositions(state.getPositions())
result = context.getState(getEnergy=True, getForces=True)
np.save(folder + "/forces.npy", result.getForces(asNumpy=True).value_in_unit(
    openmm.unit.kilojoule_per_mole / openmm.unit.nanometer))
print(result.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
"""


def test_tabulated_xml_setup_runs_in_plain_openmm_with_the_op_library(chignolin, tmp_path, poisoned_gnnmd):
    """A fresh process without gnnmd: torch.ops.load_library(path), then the XML set-up runs the
    native op inside TorchForce; without the library, deserializing names the missing op."""
    from gnnmd.kernels import ops
    from gnnmd.models import load_model

    out = tmp_path / "setup"
    assert main(["openmm-xml", "chignolin", "--backend", "tabulated", "-o", str(out)]) == 0
    provenance = json.loads((out / "gnnmd-setup.json").read_text())
    assert provenance["implementation"] == "native-cpu" and provenance["ops"] == list(ops.OPS)
    assert {"tabulated_conv", "pair_distances", "bonded_priors", "pair_repulsion"} <= set(provenance["ops"])
    assert "torch.ops.load_library" in provenance["runtime_requirements"][-1]
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_OPENMM)
    environment = {**os.environ, "PYTHONPATH": str(poisoned_gnnmd), "OMP_NUM_THREADS": "1"}
    run = [sys.executable, str(script), str(out)]
    completed = subprocess.run([*run, str(ops.library_path())], env=environment, capture_output=True,
                               text=True, timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    positions = np.asarray(chignolin.positions_nm)
    model = load_model("default", backend="tabulated")
    reference = create_system(chignolin.topology, model, platform="CPU")  # the same model, in this process
    expected_energy, expected_forces = evaluate(reference, positions)
    assert float(completed.stdout.strip().splitlines()[-1]) == pytest.approx(expected_energy, rel=1e-5)
    np.testing.assert_allclose(np.load(out / "forces.npy"), expected_forces, rtol=1e-4, atol=1e-3)
    missing = subprocess.run([*run, "-"], env=environment, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "gnnmd::tabulated_conv" in missing.stderr, missing.stderr[-2000:]
    # The set-up's own run.py loads the library named in gnnmd-setup.json, or says what is missing.
    runner = [sys.executable, str(out / "run.py")]
    ran = subprocess.run([*runner, "--steps", "4", "--every", "2"], env=environment, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0 and "4 steps of 49 particles" in ran.stdout, ran.stderr[-2000:]
    wrong = subprocess.run([sys.executable, str(out / "run.py"), "--ops-library", str(tmp_path / "none.so")],
                           env=environment, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert wrong.returncode != 0 and "pass --ops-library PATH" in wrong.stderr
