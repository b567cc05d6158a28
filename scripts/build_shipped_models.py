"""Rebuild the shipped untrained models, and record continuity reference values of every shipped model.

    python scripts/build_shipped_models.py            # rebuild default + cgschnet-benchmark, then record
    python scripts/build_shipped_models.py --record   # only record (e.g. after scripts/build_ala2.py)

Reference values (tests/continuity/reference_values.json) are each model's
energy and forces, in float64, on a fixed structure it covers: native chignolin
for protein models, the first CGnet frame for alanine-dipeptide models, the
first frame of the shipped all-atom alanine-dipeptide data for all-atom models. The
continuity tests compare against them, so a shipped file keeps its numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gnnmd.models import (
    BENCHMARK_CONFIG,
    DEFAULT_CONFIG,
    PRETRAINED_DIR,
    list_models,
    load_model,
    save_checkpoint,
    untrained_model,
)
from gnnmd.systems import list_systems, load_system

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "continuity" / "reference_values.json"
SEED = 20261121
UNTRAINED = {
    "default": (
        DEFAULT_CONFIG,
        "laptop-sized CGSchNet (64 features, 2 blocks, 1.2 nm), untrained",
        "plumbing and speed tests only: untrained (random network on native-structure priors)",
    ),
    "cgschnet-benchmark": (
        BENCHMARK_CONFIG,
        "mlcg example CGSchNet (128/128, 5 blocks, 128 Gaussians, 2 nm, tanh), untrained",
        "throughput benchmarks at the mlcg example size: untrained, no science",
    ),
}


def reference_structure(model):
    """(structure name, topology, positions (n, 3) nm) that ``model`` covers."""
    if all("." not in t for t in model.vocabulary):  # element types: an all-atom model
        from gnnmd.data.ala2_allatom import ala2_allatom_frames, ala2_allatom_topology

        return "ala2-allatom frame 0", ala2_allatom_topology(), ala2_allatom_frames()[0][0]
    if "ACE.C" in model.vocabulary:
        from gnnmd.data.importers import CGNET_DIR, cgnet_ala2_topology
        from gnnmd.units import NM_PER_ANGSTROM

        frame = np.load(CGNET_DIR / "cgnet_ala2_coordinates.npy")[0] * NM_PER_ANGSTROM
        return "cgnet-ala2 frame 0", cgnet_ala2_topology(), frame
    chignolin = load_system("chignolin")
    return "chignolin", chignolin.topology, chignolin.positions_nm


def build_untrained() -> None:
    systems = [load_system(name) for name in list_systems()]
    structures = [(s.topology, s.positions_nm) for s in systems if s.topology.mapping == "5bead"]
    for name, (config, description, good_for) in UNTRAINED.items():
        model = untrained_model(config, structures, seed=SEED)
        metadata = {
            "name": name,
            "trained": False,
            "description": description,
            "good_for": good_for,
            "priors": f"native structures of {', '.join(s.name for s in systems)} (gnnmd.nn.priors.fit)",
            "seed": SEED,
            "built_by": "scripts/build_shipped_models.py",
        }
        path = save_checkpoint(model, PRETRAINED_DIR / f"{name}.pt", metadata)
        print(f"{path}: {sum(p.numel() for p in model.parameters())} parameters")


def record() -> None:
    reference = {}
    for name in list_models():
        model = load_model(name).double()
        structure, topology, positions = reference_structure(model)
        energy, forces = model.energy_and_forces(
            torch.tensor(positions, dtype=torch.float64), model.pack([topology])
        )
        reference[name] = {
            "structure": structure,
            "energy_kj_per_mol": float(energy[0]),
            "forces_kj_per_mol_nm": forces.tolist(),
        }
        print(f"{name}: E({structure}) = {float(energy[0]):.6f} kJ/mol")
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {REFERENCE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="only record reference values")
    if not parser.parse_args().record:
        build_untrained()
    record()


if __name__ == "__main__":
    main()
