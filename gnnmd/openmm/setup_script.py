"""Run this OpenMM set-up (written by ``gnnmd openmm-xml``) with plain OpenMM: no gnnmd code is imported.

    python run.py [SETUP_FOLDER] [--steps 1000] [--every 100] [--platform Reference] [--ops-library PATH]

``gnnmd openmm-xml`` copies this file into every set-up folder as ``run.py`` (its
source is ``gnnmd/openmm/setup_script.py``); the folder defaults to the script's own.
Needs torch (imported first), openmm 8.5.x and the openmm-torch plugin
(``pip install openmmtorch==1.5``); a model exported with a native kernel backend
also needs gnnmd's op library (``gnnmd-setup.json`` names it; ``--ops-library``
points elsewhere). Writes trajectory.dcd and energy.csv into the set-up folder.
Units: OpenMM's (nm, ps, kJ/mol, K).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The order matters and must not be sorted: torch first, because openmm-torch's plugin links
# against torch's libraries and fails to load (silently) if openmm is imported before torch.
# isort: off
import torch
import openmmtorch  # noqa: F401  (loads the TorchForce plugin and its XML serialization)
import openmm
import openmm.app

# isort: on


def check_torch_plugin() -> None:
    """Exit with a clear message when the TorchForce plugin did not load."""
    failures = [f for f in openmm.Platform.getPluginLoadFailures() if "Torch" in f and "OpenCL" not in f]
    if failures:
        sys.exit(
            "the openmm-torch plugin failed to load (import torch before openmm?): " + "; ".join(failures)
        )


def load_ops_library(setup: Path, override: str | None) -> None:
    """Load gnnmd's compiled ops before system.xml is read, where the embedded model calls them."""
    provenance = json.loads((setup / "gnnmd-setup.json").read_text())
    if not provenance.get("ops"):
        return
    path = override or provenance.get("ops_library")
    if not path or not Path(path).is_file():
        sys.exit(
            f"this set-up's model calls gnnmd's compiled ops {provenance['ops']}, and their library is not "
            f"at {path}: pass --ops-library PATH (`gnnmd ops-library` prints it where gnnmd is installed)"
        )
    torch.ops.load_library(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "setup", type=Path, nargs="?", default=Path(__file__).resolve().parent,
        help="folder with system.xml, integrator.xml, state.xml, cg.pdb (default: this script's folder)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=1000, help="steps to run (default: 1000)")
    parser.add_argument("--every", type=int, default=100, help="steps between reports (default: 100)")
    parser.add_argument(
        "--platform", default="Reference",
        help="OpenMM platform (default: Reference, which steps a System of model forces alone "
        "faster than CPU's thread pool; CUDA on a GPU)",
    )  # fmt: skip
    parser.add_argument("--ops-library", help="gnnmd's op library, if not where gnnmd-setup.json says")
    args = parser.parse_args(argv)
    check_torch_plugin()
    load_ops_library(args.setup, args.ops_library)

    system = openmm.XmlSerializer.deserialize((args.setup / "system.xml").read_text())
    integrator = openmm.XmlSerializer.deserialize((args.setup / "integrator.xml").read_text())
    pdb = openmm.app.PDBFile(str(args.setup / "cg.pdb"))
    simulation = openmm.app.Simulation(
        pdb.topology, system, integrator, openmm.Platform.getPlatformByName(args.platform),
        state=str(args.setup / "state.xml"),
    )  # fmt: skip
    simulation.reporters.append(openmm.app.DCDReporter(str(args.setup / "trajectory.dcd"), args.every))
    simulation.reporters.append(
        openmm.app.StateDataReporter(
            str(args.setup / "energy.csv"), args.every, step=True, potentialEnergy=True, temperature=True
        )
    )
    simulation.step(args.steps)
    state = simulation.context.getState(getEnergy=True)
    print(
        f"{args.steps} steps of {system.getNumParticles()} particles on {args.platform}; final potential "
        f"energy {state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole):.1f} kJ/mol"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
