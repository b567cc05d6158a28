"""Shipped model files keep giving the numbers recorded when they were built.

Reference values come from scripts/build_shipped_models.py; a change of format
or code that alters a shipped model's energies or forces fails here, and so
does a shipped model without recorded values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gnnmd.models import list_models, load_model
from tests.conftest import load_script

REFERENCE = json.loads((Path(__file__).parent / "reference_values.json").read_text())
BUILDER = Path(__file__).resolve().parents[2] / "scripts" / "build_shipped_models.py"


def builder():
    return load_script(BUILDER)


def test_every_shipped_model_has_reference_values():
    assert sorted(REFERENCE) == list_models()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_model_reproduces_reference(name):
    expected = REFERENCE[name]
    model = load_model(name).double()
    structure, topology, positions = builder().reference_structure(model)
    assert structure == expected["structure"]
    energy, forces = model.energy_and_forces(
        torch.tensor(positions, dtype=torch.float64), model.pack([topology])
    )
    reference_energy = expected["energy_kj_per_mol"]
    assert abs(float(energy[0]) - reference_energy) < 1e-9 * max(1.0, abs(reference_energy))
    reference_forces = torch.tensor(expected["forces_kj_per_mol_nm"], dtype=torch.float64)
    torch.testing.assert_close(forces, reference_forces, rtol=1e-9, atol=1e-9)
