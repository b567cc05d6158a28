"""scripts/build_reference.py: independent runs with cold and hot starts, merged with their trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnnmd.data.dataset import ForceDataset
from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_reference.py"


def test_presets_and_a_tiny_chignolin_reference(tmp_path):
    script = load_script(SCRIPT)
    ala2 = script.parse(["ala2"])
    assert (ala2.trajectories, ala2.ns, ala2.frame_interval_ps, ala2.cold_fraction) == (42, 1.0, 0.2, 0.0)
    assert ala2.work.name == "ala2-reference"
    assert [script.is_cold(i, 4, 0.5) for i in range(4)] == [True, True, False, False]
    argv = ["chignolin", "--work", str(tmp_path), "--trajectories", "2", "--ns", "0.0004",
            "--frame-interval-ps", "0.1", "--start-ps", "0.2", "--equilibration-ps", "0.1",
            "--processes", "2", "--platform", "Reference"]  # fmt: skip
    script.main(argv)
    merged = ForceDataset(tmp_path / "chignolin_reference.h5")
    assert merged.trajectory_ids[0].tolist() == [0, 0, 0, 1, 1, 1]  # 4 frames each, the first dropped
    x, f = merged.frames(0)
    assert not np.allclose(x[0], x[3], atol=0.01)  # the hot start went elsewhere
    import h5py

    with h5py.File(tmp_path / "chignolin_reference.h5") as file:
        assert "1 cold starts" in file["molecules/chignolin"].attrs["description"]
