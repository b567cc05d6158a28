"""Rebuild the shipped untrained models and their continuity reference values.

    python scripts/build_shipped_models.py

Writes gnnmd/pretrained/{default,cgschnet-benchmark}.pt and
tests/continuity/reference_values.json (energies and forces of each model on
the native chignolin structure, float64), which the continuity tests compare
against so that a shipped file keeps giving the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gnnmd.models import (
    BENCHMARK_CONFIG,
    DEFAULT_CONFIG,
    PRETRAINED_DIR,
    load_model,
    save_checkpoint,
    untrained_model,
)  # fmt: skip
from gnnmd.systems import list_systems, load_system

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "continuity" / "reference_values.json"
SEED = 20261121
MODELS = {
    "default": (DEFAULT_CONFIG, "laptop-sized CGSchNet (64 features, 2 blocks, 1.2 nm), untrained"),
    "cgschnet-benchmark": (
        BENCHMARK_CONFIG,
        "mlcg example CGSchNet (128/128, 5 blocks, 128 Gaussians, 2 nm, tanh), untrained",
    ),
}


def main() -> None:
    systems = [load_system(name) for name in list_systems()]
    structures = [(s.topology, s.positions_nm) for s in systems if s.topology.mapping == "5bead"]
    chignolin = load_system("chignolin")
    reference = {}
    for name, (config, description) in MODELS.items():
        model = untrained_model(config, structures, seed=SEED)
        metadata = {
            "name": name,
            "trained": False,
            "description": description,
            "priors": f"native structures of {', '.join(s.name for s in systems)} (gnnmd.nn.priors.native)",
            "seed": SEED,
            "built_by": "scripts/build_shipped_models.py",
        }
        path = save_checkpoint(model, PRETRAINED_DIR / f"{name}.pt", metadata)
        loaded = load_model(path).double()
        batch = loaded.pack([chignolin.topology])
        positions = torch.tensor(chignolin.positions_nm, dtype=torch.float64)
        energy, forces = loaded.energy_and_forces(positions, batch)
        reference[name] = {
            "system": "chignolin",
            "energy_kj_per_mol": float(energy[0]),
            "forces_kj_per_mol_nm": forces.tolist(),
        }
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{path}: {parameters} parameters, E(native) = {float(energy[0]):.6f} kJ/mol")
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
