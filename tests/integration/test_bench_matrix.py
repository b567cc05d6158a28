"""``gnnmd bench`` as a matrix: every combination timed, JSON rows with the core keys, a PNG plot."""

from __future__ import annotations

import json

import pytest

from gnnmd.cli import main

CORE_KEYS = {
    "system", "beads", "replicas", "steps", "dt_fs", "backend", "device", "ns_per_day",
    "ns_per_day_per_replica", "steps_per_second", "ms_per_step", "peak_memory_mb", "model_trained",
}  # fmt: skip


def test_matrix_of_replicas_skins_and_engines(tmp_path, capsys, one_thread):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    status = main([
        "bench", "--system", "chignolin", "--replicas", "2,1", "--skin-nm", "0,0.1",
        "--engine", "replica-runner,openmm", "--steps", "2", "--warmup", "1",
        "--json", str(out), "--plot", str(plot),
    ])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "vs R=1" in printed and "UNTRAINED" in printed
    assert "all cases: reference (torch)" in printed  # what the cases share, once, below the table
    assert max(len(line) for line in printed.splitlines()) <= 80
    rows = json.loads(out.read_text())["benchmarks"]
    # 2 skins x 2 replica counts in the runner; OpenMM has no skin axis: 2 rows.
    assert len(rows) == 6 and all(CORE_KEYS <= set(row) for row in rows)
    assert [(r["engine"], r["replicas"], r["skin_nm"]) for r in rows] == [
        ("replica-runner", 1, 0.0), ("replica-runner", 1, 0.1), ("replica-runner", 2, 0.0),
        ("replica-runner", 2, 0.1), ("openmm", 1, None), ("openmm", 2, None),
    ]  # fmt: skip
    assert "route_overhead_ms_per_step" in rows[4]
    for row in rows:
        single = next(r for r in rows if r["replicas"] == 1 and r["engine"] == row["engine"]
                      and r["skin_nm"] == row["skin_nm"])  # fmt: skip
        assert row["speedup_vs_single_replica"] == pytest.approx(row["ns_per_day"] / single["ns_per_day"])
    assert rows[0]["neighbor_list_builds"] == 2  # no skin: one build per step and replica
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_matrix_refusals_exit_2(capsys):
    assert main(["bench", "--cuda-graph", "on", "--steps", "1"]) == 2
    assert "--cuda-graph on needs --device cuda" in capsys.readouterr().err
    assert main(["bench", "--route", "python", "--steps", "1"]) == 2
    assert "apply to --engine openmm only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--engine", "gromacs"])
    assert "'gromacs' is not one of replica-runner, openmm" in capsys.readouterr().err
