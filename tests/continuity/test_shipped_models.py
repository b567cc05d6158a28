"""Shipped model files keep giving the numbers recorded when they were built.

Reference values come from scripts/build_shipped_models.py; a change of format
or code that alters a shipped model's energies or forces fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gnnmd.models import load_model

REFERENCE = json.loads((Path(__file__).parent / "reference_values.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_model_reproduces_reference(name, chignolin):
    expected = REFERENCE[name]
    model = load_model(name).double()
    positions = torch.tensor(chignolin.positions_nm, dtype=torch.float64)
    energy, forces = model.energy_and_forces(positions, model.pack([chignolin.topology]))
    assert abs(float(energy[0]) - expected["energy_kj_per_mol"]) < 1e-9 * max(
        1.0, abs(expected["energy_kj_per_mol"])
    )
    torch.testing.assert_close(
        forces, torch.tensor(expected["forces_kj_per_mol_nm"], dtype=torch.float64), rtol=1e-9, atol=1e-9
    )
