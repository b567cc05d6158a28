"""Committee monitoring of a run: force disagreement per replica, its peaks, and warnings.

A :class:`CommitteeMonitor` evaluates a :class:`~gnnmd.nn.committee.Committee`
on a runner's current positions; :class:`~gnnmd.sim.simulation.Simulation`
calls it every ``interval`` steps and at every log row. Per global replica it
keeps the largest RMS and largest per-bead disagreement (kJ/mol/nm) since the
previous log row, which become that row's :data:`~gnnmd.sim.reporters.COMMITTEE_COLUMNS`,
and since the start of the run (its :meth:`~CommitteeMonitor.peaks`, for
summary.json). A replica whose RMS disagreement exceeds the threshold is named
once per monitor through ``warn``. The state travels in the simulation
checkpoint, so a resumed run logs what the uninterrupted run would have.

Each process monitors its own replicas: under torchrun every rank evaluates
its shard, and the peaks are gathered with the throughputs.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from gnnmd.errors import CheckpointError
from gnnmd.graph import GraphBatch
from gnnmd.nn.committee import Committee
from gnnmd.sim.runner import ReplicaRunner


class CommitteeMonitor:
    """Evaluate ``committee`` during a run.

    Args:
        committee: the models (moved to the runner's device and dtype at the first evaluation).
        interval: steps between evaluations (> 0); every log row gets one too.
        threshold_kj_mol_nm: RMS disagreement above which a replica is named; None names none.
        warn: receives each warning line (default: appended to :attr:`warnings`).
    """

    def __init__(
        self,
        committee: Committee,
        interval: int,
        threshold_kj_mol_nm: float | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if interval < 1:
            raise ValueError(f"committee interval must be at least 1 step, got {interval}")
        if threshold_kj_mol_nm is not None and not threshold_kj_mol_nm > 0:
            raise ValueError(f"committee threshold must be positive (kJ/mol/nm), got {threshold_kj_mol_nm}")
        self.committee = committee
        self.interval = int(interval)
        self.threshold = threshold_kj_mol_nm
        self.warnings: list[str] = []
        self.warn = warn if warn is not None else self.warnings.append
        #: global replica -> [rms, max] kJ/mol/nm since its previous log row.
        self.window: dict[int, list[float]] = {}
        #: global replica -> {"rms", "rms_step", "max"}: the run's largest values (kJ/mol/nm).
        self.largest: dict[int, dict] = {}
        self.last_step: int | None = None
        self._warned: set[int] = set()
        self._batch: tuple[tuple[int, ...], GraphBatch] | None = None

    def _batch_for(self, runner: ReplicaRunner) -> GraphBatch:
        """The committee's batch of the runner's replicas, packed again after replicas were dropped."""
        key = tuple(runner.replica_ids)
        if self._batch is None or self._batch[0] != key:
            self.committee.to(device=runner.device, dtype=runner.dtype)
            self._batch = (key, self.committee.pack(runner.topologies, runner.device))
        return self._batch[1]

    def evaluate(self, runner: ReplicaRunner) -> None:
        """Evaluate at the runner's current step (once per step) and record every replica's values."""
        if self.last_step == runner.steps_done:
            return
        result = self.committee.evaluate(runner.positions, self._batch_for(runner))
        rms, largest = result.rms.tolist(), result.max.tolist()
        for index, replica in enumerate(runner.replica_ids):
            self._record(replica, rms[index], largest[index], runner.steps_done)
            self._check(replica, runner.topologies[index].name, runner.steps_done, rms[index], largest[index])
        self.last_step = runner.steps_done

    def _record(self, replica: int, rms: float, largest: float, step: int) -> None:
        window = self.window.setdefault(replica, [rms, largest])
        window[:] = [max(window[0], rms), max(window[1], largest)]
        peak = self.largest.setdefault(replica, {"rms": rms, "rms_step": step, "max": largest})
        if rms > peak["rms"]:
            peak.update(rms=rms, rms_step=step)
        peak["max"] = max(peak["max"], largest)

    def _check(self, replica: int, system: str, step: int, rms: float, largest: float) -> None:
        if self.threshold is None or rms <= self.threshold or replica in self._warned:
            return
        self._warned.add(replica)
        self.warn(
            f"replica {replica} ({system}): committee force disagreement {rms:.1f} kJ/mol/nm RMS "
            f"(largest bead {largest:.1f}) at step {step} exceeds the threshold "
            f"{self.threshold:g} kJ/mol/nm: the model is likely extrapolating"
        )

    def row(self, replica: int) -> list[str]:
        """The log columns of ``replica``: its values since its previous row (empty if none); resets them."""
        values = self.window.pop(replica, None)
        return ["", ""] if values is None else [f"{value:.6f}" for value in values]

    def peaks(self) -> dict[int, dict]:
        """Global replica -> its largest RMS (and the step of it) and largest per-bead disagreement so far."""
        return {replica: dict(peak) for replica, peak in sorted(self.largest.items())}

    def state(self) -> dict:
        """Plain values for the simulation checkpoint."""
        return {"members": list(self.committee.names), "window": {r: list(v) for r, v in self.window.items()},
                "largest": self.peaks(), "last_step": self.last_step}  # fmt: skip

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`; CheckpointError if it was written by another committee."""
        if state["members"] != self.committee.names:
            raise CheckpointError(
                f"field 'extra.committee.members' is {state['members']} but this committee is "
                f"{self.committee.names}; resume with the committee of the original run"
            )
        self.window = {int(r): [float(x) for x in v] for r, v in state["window"].items()}
        self.largest = {int(r): dict(peak) for r, peak in state["largest"].items()}
        self.last_step = state["last_step"]


def committee_monitor(plan: dict, systems: Sequence, rank: int) -> CommitteeMonitor:
    """The committee monitor of ``gnnmd simulate``'s run plan; the members are checked against its systems.

    Members run the reference kernels whatever backend drives the run (one evaluation per report).
    """
    from gnnmd.models import load_model

    committee = Committee([load_model(name) for name in plan["committee"]], plan["committee"])
    committee.pack([s.topology for s in systems])

    def warn(line: str) -> None:
        print(f"gnnmd simulate: rank {rank}: warning: {line}", file=sys.stderr)

    threshold = plan["committee_threshold_kj_mol_nm"]
    return CommitteeMonitor(committee, plan["committee_interval"], threshold, warn)


def committee_summary(plan: dict, summaries: Sequence) -> dict:
    """Every replica's largest force disagreement (kJ/mol/nm) over the run, and those above the threshold."""
    peaks = {replica: peak for s in summaries for replica, peak in (s.committee or {}).items()}
    threshold = plan["committee_threshold_kj_mol_nm"]
    above = [] if threshold is None else [r for r, peak in sorted(peaks.items()) if peak["rms"] > threshold]
    return {
        "members": plan["committee"],
        "interval_steps": plan["committee_interval"],
        "threshold_kj_mol_nm": threshold,
        "max_rms_kj_mol_nm": {str(r): peak["rms"] for r, peak in sorted(peaks.items())},
        "step_of_max_rms": {str(r): peak["rms_step"] for r, peak in sorted(peaks.items())},
        "max_bead_kj_mol_nm": {str(r): peak["max"] for r, peak in sorted(peaks.items())},
        "above_threshold": above,
    }
