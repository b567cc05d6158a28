"""Serialized OpenMM set-ups that run without gnnmd.

:func:`write_xml_setup` writes, into one folder:

================  ============================================================
file              content
================  ============================================================
``system.xml``    the System: particles with bead masses (amu) and one
                  TorchForce whose TorchScript module is embedded in the file
``integrator.xml``  LangevinMiddleIntegrator (K, 1/ps, ps), seeded
``state.xml``     positions (nm, every replica at the native structure),
                  velocities drawn at the temperature (nm/ps), box if periodic
``cg.pdb``        the CG topology (one atom per bead) for ``Simulation`` and for
                  reading trajectories with mdtraj
``gnnmd-setup.json``  provenance: model, trained or not, system, replicas, units,
                  versions, and what the running side must be able to import
``run.py``        a plain-OpenMM script that runs the set-up (no gnnmd import;
                  source: :mod:`gnnmd.openmm.setup_script`)
``README.md``     what to install on the running machine and how to run it
================  ============================================================

The running side needs ``torch`` (the pinned 2.9.x, imported **before**
``openmm``), ``openmm`` 8.5.x and the openmm-torch plugin (``pip install
openmmtorch==1.5``; ``import openmmtorch`` after torch). No gnnmd code is read.
Every file is written to a temporary name and renamed, so an interrupted write
never leaves half a file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import openmm
import openmm.app
import torch

from gnnmd.engine import LangevinSettings
from gnnmd.export import exported_metadata, kernel_provenance
from gnnmd.models import is_trained
from gnnmd.openmm.forces import model_label
from gnnmd.openmm.platforms import PlatformSpec
from gnnmd.openmm.simulation import check_initial_energy, langevin_integrator, replica_positions
from gnnmd.openmm.system import ModelLike, create_system, resolve_model
from gnnmd.openmm.topology import openmm_topology
from gnnmd.systems import System, load_system

SETUP_FILES = (
    "system.xml",
    "integrator.xml",
    "state.xml",
    "cg.pdb",
    "gnnmd-setup.json",
    "run.py",
    "README.md",
)
#: What a plain OpenMM script needs to load and run the set-up.
RUNTIME_REQUIREMENTS = [
    "torch 2.9.x, imported before openmm (openmm-torch's plugin needs torch's libraries loaded)",
    "openmm 8.5.x (8.6 segfaults deserializing a System with a TorchForce)",
    "openmm-torch plugin: pip install openmmtorch==1.5, then `import openmmtorch` after torch",
]


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _pdb_text(topology: openmm.app.Topology, positions_nm: np.ndarray) -> str:
    """The CG PDB (chains lettered A, B, ... per replica; residues numbered from 1)."""
    buffer = io.StringIO()
    openmm.app.PDBFile.writeFile(topology, positions_nm * openmm.unit.nanometer, buffer, keepIds=False)
    return buffer.getvalue()


def write_xml_setup(
    system: System | str | os.PathLike,
    model: ModelLike,
    out_dir: str | os.PathLike,
    *,
    replicas: int = 1,
    langevin: LangevinSettings | None = None,
    seed: int = 0,
    box_nm: np.ndarray | None = None,
    precision: str = "mixed",
) -> dict[str, Path]:
    """Write a TorchForce set-up of ``replicas`` copies of ``system`` with ``model`` into ``out_dir``.

    Args:
        system: a System, or a shipped name or PDB path.
        model: CGPotential, shipped name, checkpoint path or exported file.
        out_dir: folder (created if needed); the files of :data:`SETUP_FILES` are
            replaced, nothing else in it is touched.
        replicas: non-interacting copies in one TorchForce call.
        langevin: time step (fs), temperature (K), friction (1/ps).
        seed: seeds the velocities in state.xml and the integrator's noise.
        box_nm: optional (3, 3) periodic box vectors in nm.
        precision: ``"double"`` exports a float64 module, else float32.

    Returns:
        File name -> path of every file written.

    Raises:
        SimulationError: the energy at the native structure is not finite.
    """
    system = system if isinstance(system, System) else load_system(system)
    settings = langevin if langevin is not None else LangevinSettings()
    model = resolve_model(model)
    # The files are platform-independent; the CPU platform evaluates the first state.
    spec = PlatformSpec("CPU", precision)
    omm_system = create_system(system.topology, model, route="torch", replicas=replicas, box_nm=box_nm,
                               platform=spec)  # fmt: skip
    positions = replica_positions(system, replicas)
    label = f"model {model_label(model)} on {system.name} x {replicas}"
    state = _initial_state(omm_system, spec, settings, seed, positions, label)
    provenance = _provenance(system, model, replicas, settings, seed, spec, box_nm)
    texts = {
        "system.xml": openmm.XmlSerializer.serialize(omm_system),
        "integrator.xml": openmm.XmlSerializer.serialize(langevin_integrator(settings, seed)),
        "state.xml": openmm.XmlSerializer.serialize(state),
        "cg.pdb": _pdb_text(openmm_topology(system.topology.replicate(replicas), box_nm), positions),
        "gnnmd-setup.json": json.dumps(provenance, indent=2) + "\n",
        "run.py": Path(__file__).with_name("setup_script.py").read_text(),
        "README.md": _readme(provenance),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in texts.items():
        _write_text(out / name, text)
        written[name] = out / name
    return written


def _readme(provenance: dict) -> str:
    """How to run the set-up on a machine without gnnmd."""
    requirements = "\n".join(f"- {line}" for line in provenance["runtime_requirements"])
    trained = "trained" if provenance["trained"] else "UNTRAINED (not a physical model)"
    size = f"{provenance['system']} x {provenance['replicas']} ({provenance['particles']} particles)"
    return f"""# OpenMM set-up: {size}

Written by `gnnmd openmm-xml` with model `{provenance["model"]}` ({trained}), kernel backend
`{provenance.get("backend")}` ({provenance.get("implementation")}). Units: nm, ps, kJ/mol, amu, K.

## Run it

    python run.py --steps 1000 --every 100      # writes trajectory.dcd and energy.csv here

## What the running machine needs

{requirements}

## The one rule in your own scripts

Import `torch` before `openmm` (then `import openmmtorch`). Imported the other way round, the
TorchForce plugin fails to load silently and creating the Context fails with "Specified a
Platform for a Context which does not support all required kernels";
`openmm.Platform.getPluginLoadFailures()` then names the cause. `run.py` follows the rule and
checks it.
"""


def _initial_state(
    omm_system: openmm.System,
    spec: PlatformSpec,
    settings: LangevinSettings,
    seed: int,
    positions_nm: np.ndarray,
    label: str,
) -> openmm.State:
    """Positions (nm) and velocities drawn at the temperature; SimulationError if the energy is not finite."""
    context = openmm.Context(omm_system, langevin_integrator(settings, seed), spec.platform())
    context.setPositions(positions_nm * openmm.unit.nanometer)
    check_initial_energy(context, label)
    context.setVelocitiesToTemperature(settings.temperature_k * openmm.unit.kelvin, int(seed))
    return context.getState(getPositions=True, getVelocities=True, getParameters=True)


def _provenance(
    system: System,
    model: ModelLike,
    replicas: int,
    settings: LangevinSettings,
    seed: int,
    spec: PlatformSpec,
    box_nm: np.ndarray | None,
) -> dict:
    import gnnmd

    if isinstance(model, str):  # an exported file: its own provenance says whether it is trained
        exported = exported_metadata(model)
        trained = exported.get("trained")
        kernels = {key: exported.get(key) for key in ("backend", "implementation", "ops", "ops_library")}
    else:
        trained = is_trained(model)
        kernels = kernel_provenance(model)
    requirements = list(RUNTIME_REQUIREMENTS)
    if kernels.get("ops"):
        requirements.append(
            f"gnnmd's op library, loaded before system.xml is deserialized: "
            f"torch.ops.load_library({kernels['ops_library']!r}) (path: `gnnmd ops-library`)"
        )
    return {
        "format": "gnnmd-openmm-setup",
        "format_version": 1,
        "model": model_label(model),
        "trained": trained,
        "system": system.name,
        "beads_per_replica": system.topology.n_beads,
        "replicas": replicas,
        "particles": system.topology.n_beads * replicas,
        "route": "torch (openmmtorch.TorchForce, module embedded in system.xml)",
        "model_dtype": str(spec.model_dtype).replace("torch.", ""),
        "timestep_fs": settings.timestep_fs,
        "temperature_k": settings.temperature_k,
        "friction_per_ps": settings.friction_per_ps,
        "seed": seed,
        "box_nm": None if box_nm is None else np.asarray(box_nm, dtype=float).tolist(),
        "units": {"length": "nm", "time": "ps", "energy": "kJ/mol", "mass": "amu", "temperature": "K"},
        "written_with": {
            "gnnmd": gnnmd.__version__,
            "torch": torch.__version__,
            "openmm": openmm.__version__,
        },
        **kernels,
        "runtime_requirements": requirements,
    }
