"""The gnnmd command line: bench, export, listings, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from gnnmd.cli import main
from gnnmd.export import exported_metadata

BENCH_KEYS = {
    "system", "beads", "replicas", "steps", "dt_fs", "backend", "device", "ns_per_day",
    "ns_per_day_per_replica", "steps_per_second", "ms_per_step", "peak_memory_mb", "model_trained",
}  # fmt: skip


def test_bench_writes_json_and_says_untrained(tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = main(
        ["bench", "--replicas", "3", "--steps", "4", "--warmup", "1", "--dt-fs", "2", "--json", str(out)]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED" in printed
    document = json.loads(out.read_text())
    assert document["schema"] == "gnnmd-bench" and document["schema_version"] == 3
    assert {"host", "utc_time", "torch", "cpu", "git_sha"} <= set(document["system_info"])
    (row,) = document["benchmarks"]
    assert BENCH_KEYS <= set(row)
    assert row["system"] == "chignolin" and row["beads"] == 49 and row["replicas"] == 3 and row["steps"] == 4
    assert row["model_trained"] is False and row["backend"] == "reference"
    assert row["implementation"] == "torch" and row["threads"] >= 1
    assert row["thread_policy"].startswith("auto: ")
    assert row["noise"] == "philox4x32-10 (native-cpu)"  # the op library is built by make test
    # ns/day is consistent with the measured step rate: 2 fs x steps/s x 86400 s/day.
    expected = 2e-6 * row["steps_per_second"] * 86400
    assert abs(row["ns_per_day_per_replica"] / expected - 1) < 1e-9
    assert abs(row["ns_per_day"] / (3 * row["ns_per_day_per_replica"]) - 1) < 1e-9


def test_export_command(tmp_path, capsys):
    out = tmp_path / "chignolin.pt"
    assert (
        main(["export", "default", "--system", "chignolin", "-o", str(out), "--replicas", "2", "--forces"])
        == 0
    )
    module = torch.jit.load(str(out))
    energy, forces = module(torch.zeros(98, 3) + torch.randn(98, 3))
    assert forces.shape == (98, 3)
    assert exported_metadata(out)["replicas"] == 2
    assert "UNTRAINED" in capsys.readouterr().out


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["bench", "--model", "nope", "--steps", "1"]) == 2
    assert "model 'nope' is neither a shipped model" in capsys.readouterr().err
    assert main(["bench", "--system", str(tmp_path / "missing.pdb"), "--steps", "1"]) == 2
    assert "missing.pdb" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    assert main(["export", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_listings(capsys):
    assert main(["systems"]) == 0
    assert "engrailed" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and "good for" in out
    from gnnmd.models import list_models, model_path, read_checkpoint

    # Every shipped model says what it is good for.
    assert all(read_checkpoint(model_path(name))["metadata"].get("good_for") for name in list_models())


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "gnnmd.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("gnnmd ")
