"""Bad input to the OpenMM integration: each a clear error naming the cause."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from gnnmd.errors import BeadTypeError, CheckpointError, OpenMMSetupError, TopologyError
from gnnmd.export import save_exported
from gnnmd.models import save_checkpoint, untrained_model
from gnnmd.openmm import PlatformSpec, create_simulation, create_system, resolve_platform
from gnnmd.openmm.platforms import available_platforms
from gnnmd.systems import load_system
from tests.conftest import SMALL_CONFIG, perturbed
from tests.integration.test_openmm_forces import evaluate


def test_model_vocabulary_that_misses_the_topology(chignolin, tmp_path):
    """A CA-only model file asked to run the 5-bead chignolin: the file and first unknown type are named."""
    ca = load_system("chignolin", mapping="ca")
    path = save_checkpoint(
        untrained_model(SMALL_CONFIG, [(ca.topology, ca.positions_nm)], seed=0, mapping="ca"),
        tmp_path / "ca_model.pt",
        {"trained": False},
    )
    for route in ("torch", "python"):
        expected = rf"model {path} \(vocabulary of 21 bead types\) does not fit system 'chignolin'"
        with pytest.raises(BeadTypeError, match=expected + ".*bead type 'ASP.C'"):
            create_system(chignolin.topology, path, route=route)


def test_exported_file_for_another_system(small_model, chignolin, villin, tmp_path):
    path = save_exported(small_model, villin.topology, tmp_path / "villin.pt", dtype=torch.float64)
    with pytest.raises(BeadTypeError, match=rf"{path}: field 'bead_types' is 173 beads of system 'villin'"):
        create_system(chignolin.topology, path)


def test_exported_file_for_another_replica_count(small_model, chignolin, tmp_path):
    path = save_exported(small_model, chignolin.topology, tmp_path / "c.pt", forces=True, dtype=torch.float64)
    with pytest.raises(BeadTypeError, match=rf"{path}: field 'replicas' is 1, but the OpenMM system needs 2"):
        create_system(chignolin.topology, path, replicas=2)
    with pytest.raises(ValueError, match="runs on the 'torch' route only"):
        create_system(chignolin.topology, path, route="python")
    # The matching file works and gives the model's forces.
    x = perturbed(chignolin.positions_nm, seed=8)
    _, forces = evaluate(
        create_system(chignolin.topology, path, platform=PlatformSpec("CPU", "double")), x.numpy()
    )
    _, expected = small_model.energy_and_forces(x, small_model.pack([chignolin.topology]))
    np.testing.assert_allclose(forces, expected.numpy(), rtol=1e-9, atol=1e-9)


def test_model_that_is_not_a_model(chignolin, tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt"):
        create_system(chignolin.topology, bogus)


def test_topology_with_an_unknown_residue(chignolin, tmp_path):
    text = chignolin.pdb_path.read_text().replace("ASP A   3", "XYZ A   3")
    pdb = tmp_path / "mutant.pdb"
    pdb.write_text(text)
    with pytest.raises(TopologyError, match=rf"{pdb}: chain A residue XYZ 3: unknown amino acid 'XYZ'"):
        create_simulation(pdb, "default", platform="CPU")


def test_unknown_names_are_refused(chignolin, small_model):
    with pytest.raises(
        ValueError, match=r"unknown OpenMM platform 'OpenCL2'; allowed: \['auto', 'Reference'"
    ):
        resolve_platform("OpenCL2")
    with pytest.raises(ValueError, match=r"precision 'quad' is not one of \['single', 'mixed', 'double'\]"):
        PlatformSpec("CPU", "quad")
    with pytest.raises(ValueError, match="precision 'double' contradicts the PlatformSpec's 'mixed'"):
        resolve_platform(PlatformSpec("CPU", "mixed"), "double")
    with pytest.raises(ValueError, match=r"unknown force route 'jax'; allowed: \['torch', 'python'\]"):
        create_system(chignolin.topology, small_model, route="jax")
    with pytest.raises(ValueError, match="replicas must be an integer >= 1, got 0"):
        create_system(chignolin.topology, small_model, replicas=0)
    with pytest.raises(TypeError, match="create_system"):
        create_system(chignolin.topology, small_model, temperature=300)


def test_cuda_platform_is_never_a_silent_fallback():
    gpu = "CUDA" in available_platforms() and torch.cuda.is_available()
    if gpu:
        assert resolve_platform("CUDA").torch_device.type == "cuda"
    else:
        with pytest.raises(OpenMMSetupError, match="CUDA"):
            resolve_platform("CUDA")
        assert resolve_platform("auto").name == "Reference"


MISSING_PLUGIN = textwrap.dedent(
    """
    import sys, types
    import openmm  # before torch: openmm-torch's plugin fails to load
    # Disable gnnmd's repair of that failure, as in a process that never imported gnnmd first.
    stub = types.ModuleType("gnnmd._openmm_plugins")
    stub.repair_torch_plugins = lambda: []
    stub.torch_before_openmm = lambda: []
    sys.modules["gnnmd._openmm_plugins"] = stub
    from gnnmd.errors import OpenMMSetupError
    from gnnmd.openmm import create_system
    from gnnmd.systems import load_system
    topology = load_system("chignolin").topology
    try:
        create_system(topology, "default", platform="CPU")
    except OpenMMSetupError as error:
        print("REFUSED:", error)
    create_system(topology, "default", route="python", platform="CPU")
    print("python route still builds")
    """
)


def test_missing_openmm_torch_plugin_is_named():
    completed = subprocess.run(
        [sys.executable, "-c", MISSING_PLUGIN], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert "REFUSED: OpenMM's CPU platform has no TorchForce kernel" in completed.stdout
    assert "libOpenMMTorchReference.so" in completed.stdout
    assert "import torch (or gnnmd) before openmm" in completed.stdout
    assert "python route still builds" in completed.stdout
