"""Committee force disagreement: its definition, batching, refusals, and its log columns in a run."""

from __future__ import annotations

import csv

import pytest
import torch

from gnnmd.errors import CheckpointError, CommitteeError
from gnnmd.models import untrained_model
from gnnmd.nn.committee import Committee, force_disagreement
from gnnmd.nn.potential import CGPotential, PotentialConfig
from gnnmd.sim import ReplicaRunner
from gnnmd.sim.checkpoint import load_checkpoint
from gnnmd.sim.committee import CommitteeMonitor
from gnnmd.sim.reporters import COMMITTEE_COLUMNS, CSV_COLUMNS
from gnnmd.sim.simulation import OutputOptions, Simulation
from tests.conftest import SMALL_CONFIG, perturbed, randomized


@pytest.fixture()
def members(chignolin, villin):
    """Three float64 models: seeds 3, 3 (identical to the first) and 4."""
    structures = [(chignolin.topology, chignolin.positions_nm), (villin.topology, villin.positions_nm)]
    return [randomized(untrained_model(SMALL_CONFIG, structures, seed=s)).double() for s in (3, 3, 4)]


def positions_of(*systems) -> torch.Tensor:
    return torch.cat([perturbed(s.positions_nm, seed=i) for i, s in enumerate(systems)])


def test_definition_on_hand_values():
    """Bead 0: forces (1,0,0), (-1,0,0), (0,0,0): σ² = (1 + 1 + 0) / 3 (population, K = 3)."""
    forces = torch.zeros(3, 3, 3, dtype=torch.float64)
    forces[0, 0, 0], forces[1, 0, 0] = 1.0, -1.0
    forces[:, 1] = torch.tensor([2.0, 0.0, 0.0])  # bead 1: all agree
    forces[:, 2, 1] = torch.tensor([3.0, 3.0, 0.0])  # bead 2 (graph 1): mean 2, σ² = (1 + 1 + 4) / 3
    result = force_disagreement(forces, torch.tensor([0, 0, 1]), 2)
    sigma = torch.tensor([(2 / 3) ** 0.5, 0.0, 2**0.5], dtype=torch.float64)
    torch.testing.assert_close(result.bead_disagreement, sigma)
    torch.testing.assert_close(result.rms, torch.stack([(sigma[0] ** 2 / 2).sqrt(), sigma[2]]))
    torch.testing.assert_close(result.max, torch.stack([sigma[0], sigma[2]]))
    torch.testing.assert_close(result.mean_forces[2], torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))


def test_identical_members_agree_exactly(members, chignolin, villin, one_thread):
    committee = Committee(members[:2])
    batch = committee.pack([chignolin.topology, villin.topology])
    result = committee.evaluate(positions_of(chignolin, villin), batch)
    assert torch.equal(result.bead_disagreement, torch.zeros(49 + 173, dtype=torch.float64))
    assert result.rms.tolist() == [0.0, 0.0] and result.max.tolist() == [0.0, 0.0]


def test_two_members_match_a_hand_computation(members, chignolin, villin, one_thread):
    first, _, second = members
    topologies = [chignolin.topology, villin.topology]
    x = positions_of(chignolin, villin)
    committee = Committee([first, second])
    result = committee.evaluate(x, committee.pack(topologies))
    batch = first.pack(topologies)
    f1, f2 = first.energy_and_forces(x, batch)[1], second.energy_and_forces(x, batch)[1]
    sigma = (f1 - f2).norm(dim=1) / 2  # two vectors: their standard deviation is half their distance
    for graph, (start, stop) in enumerate([(0, 49), (49, 222)]):
        assert result.rms[graph] > 0
        torch.testing.assert_close(result.rms[graph], sigma[start:stop].square().mean().sqrt())
        torch.testing.assert_close(result.max[graph], sigma[start:stop].max())
    torch.testing.assert_close(result.mean_forces, (f1 + f2) / 2)


def test_a_replica_alone_equals_the_same_replica_in_a_batch(members, chignolin, villin, one_thread):
    committee = Committee(members[1:])
    x = positions_of(chignolin, villin)
    batched = committee.evaluate(
        torch.cat([x, x[:49]]), committee.pack([chignolin.topology, villin.topology, chignolin.topology])
    )
    alone = committee.evaluate(x[49:], committee.pack([villin.topology]))
    torch.testing.assert_close(batched.rms[1:2], alone.rms, rtol=1e-12, atol=0)
    torch.testing.assert_close(batched.max[1:2], alone.max, rtol=1e-12, atol=0)
    torch.testing.assert_close(batched.rms[0], batched.rms[2], rtol=1e-12, atol=0)


def test_incompatible_members_are_refused_by_name(members):
    with pytest.raises(CommitteeError, match="at least 2 models"):
        Committee(members[:1])
    config = PotentialConfig(**{**SMALL_CONFIG.to_dict(), "use_priors": False})
    fewer = CGPotential(config, members[0].vocabulary[:-1], None)
    with pytest.raises(CommitteeError, match=r"members a and b have different bead-type vocabularies"):
        Committee([members[0], fewer], ["a", "b"])
    other_exclusions = CGPotential(PotentialConfig(**{**config.to_dict(), "exclusion_order": 3}),
                                   members[0].vocabulary, None)  # fmt: skip
    with pytest.raises(CommitteeError, match="members a and c exclude different bonded pairs"):
        Committee([members[0], other_exclusions], ["a", "c"])


def run_with_committee(model, members, chignolin, directory, until, resume=False, progress=None):
    runner = ReplicaRunner.replicas_of(model, chignolin, 2, dtype=torch.float64, seed=8)
    monitor = CommitteeMonitor(Committee(members), 1, threshold_kj_mol_nm=1e-9)
    options = OutputOptions(directory, report_interval=2, checkpoint_interval=3, health_interval=2)
    if not resume:
        simulation = Simulation(runner, options, committee=monitor)
    else:
        simulation = Simulation.resume(runner, options, committee=monitor)
    summary = simulation.run(until, progress)
    simulation.close()
    return runner, monitor, summary


def rows(path) -> list[dict]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_a_run_logs_window_maxima_and_resumes_exactly(small_model, members, chignolin, tmp_path, one_thread):
    straight, split = tmp_path / "straight", tmp_path / "split"
    runner, monitor, summary = run_with_committee(small_model, members[1:], chignolin, straight, 4)
    logged = rows(straight / "replica_0001.csv")
    assert list(logged[0]) == list(CSV_COLUMNS + COMMITTEE_COLUMNS) and len(logged) == 3  # steps 0, 2, 4
    assert len(monitor.warnings) == 2 and "replica 1 (chignolin)" in monitor.warnings[1]
    largest = max(float(r["force_disagreement_rms_kj_mol_nm"]) for r in logged)
    assert summary.committee[1]["rms"] == pytest.approx(largest, abs=1e-6)  # the log keeps 6 decimals
    # Each row holds the largest value of the evaluations since the previous row (steps 3 and 4 here).
    replay = ReplicaRunner.replicas_of(small_model, chignolin, 2, dtype=torch.float64, seed=8)
    committee = Committee(members[1:])
    batch = committee.pack(replay.topologies)
    replay.step(3)
    at3 = committee.evaluate(replay.positions, batch)
    replay.step(1)
    at4 = committee.evaluate(replay.positions, batch)
    expected = max(float(at3.rms[1]), float(at4.rms[1]))
    assert float(logged[2]["force_disagreement_rms_kj_mol_nm"]) == pytest.approx(expected, abs=2e-6)
    # A run that dies after step 4's row, its last checkpoint at step 3, continues like the straight run.
    kept = tmp_path / "checkpoint_step3.pt"

    def keep_step_3(step: int, *_) -> None:
        if step == 3:
            kept.write_bytes((split / "checkpoint.pt").read_bytes())

    run_with_committee(small_model, members[1:], chignolin, split, 4, progress=keep_step_3)
    (split / "checkpoint.pt").write_bytes(kept.read_bytes())
    stored = load_checkpoint(kept)["extra"]["committee"]  # step 3 is in the window of the next row
    assert stored["last_step"] == 3 and stored["window"][1][0] == pytest.approx(float(at3.rms[1]), rel=1e-9)
    restored = CommitteeMonitor(Committee(members[1:]), 1)
    restored.load_state(stored)
    assert restored.state() == stored
    with pytest.raises(CheckpointError, match="started with a committee, this one has no committee"):
        Simulation.resume(ReplicaRunner.replicas_of(small_model, chignolin, 2, dtype=torch.float64),
                          OutputOptions(split, report_interval=2))  # fmt: skip
    other = CommitteeMonitor(Committee(members[1:], ["x", "y"]), 1)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: field 'extra.committee.members' is \["):
        Simulation.resume(ReplicaRunner.replicas_of(small_model, chignolin, 2, dtype=torch.float64),
                          OutputOptions(split, report_interval=2), committee=other)  # fmt: skip
    _, resumed, _ = run_with_committee(small_model, members[1:], chignolin, split, 4, resume=True)
    assert (split / "replica_0001.csv").read_text() == (straight / "replica_0001.csv").read_text()
    assert resumed.peaks() == monitor.peaks()
