"""ONNX export of the static model, run in ONNX Runtime against torch (float32)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from gnnmd.ipu.onnx_export import OUTPUT_NAMES, export_onnx, run_onnx
from gnnmd.static.model import build_static
from tests.conftest import perturbed


@pytest.fixture(scope="module")
def exported(tmp_path_factory, chignolin, villin):
    """A float32 static model of chignolin, villin, chignolin in 2 packs, its ONNX file and example input."""
    from gnnmd.models import untrained_model
    from tests.conftest import SMALL_CONFIG, randomized

    structures = [(chignolin.topology, chignolin.positions_nm), (villin.topology, villin.positions_nm)]
    model = randomized(untrained_model(SMALL_CONFIG, structures, seed=3))
    topologies = [chignolin.topology, villin.topology, chignolin.topology]
    native = np.concatenate([chignolin.positions_nm, villin.positions_nm, chignolin.positions_nm])
    static, layout = build_static(model, topologies, torch.as_tensor(native, dtype=torch.float32),
                                  target_nodes=180)  # fmt: skip
    assert layout.num_packs == 2
    positions = layout.scatter_positions(perturbed(native, scale_nm=0.05, seed=2).float())
    path = export_onnx(static, positions, tmp_path_factory.mktemp("onnx") / "static.onnx")
    return static, path, positions


def test_onnx_file_is_valid_and_self_contained(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert [i.name for i in model.graph.input] == ["positions"]  # the layout and weights are baked in
    assert not list(path.parent.glob("*.data"))


def test_onnx_runtime_equals_torch(exported):
    """Energies to 1e-6 relative, forces to 1e-5 of the largest force, pair counts exactly (float32)."""
    static, path, positions = exported
    energies, forces, counts = static(positions)
    got = run_onnx(path, positions)
    torch.testing.assert_close(got["energies"], energies, rtol=1e-6, atol=1e-4)
    scale = float(forces.abs().max())
    torch.testing.assert_close(got["forces"], forces, rtol=0, atol=1e-5 * scale)
    assert torch.equal(got["pair_counts"], counts)
    # Another conformation through the same file: the graph is not specialised to the example.
    moved = positions + 0.02 * torch.randn(positions.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(run_onnx(path, moved)["energies"], static(moved)[0], rtol=1e-6, atol=1e-4)
