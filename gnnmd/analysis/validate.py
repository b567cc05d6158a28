"""Validation of a model against reference data: simulate, then compare distributions and forces.

For each molecule of the reference dataset, R replicas start from reference
frames spread over the data, run batched Langevin dynamics with the model, and
after equilibration their frames are compared with the reference frames:
Jensen-Shannon divergence of every bond, angle and dihedral distribution (and
of the joint φ/ψ map when the molecule has exactly two dihedrals), and the
model's force RMSE on held-out reference frames. A molecule named like a
shipped protein system (chignolin, ...) also gets CA RMSD to its native
structure, fraction of native contacts Q, the joint RMSD-Q map and the folded
fraction (:mod:`gnnmd.analysis.protein`); half of its replicas start from folded reference
frames and half from unfolded ones, and the report gives the folded fraction of each start
set and the folding and unfolding transitions (key ``folding``, :mod:`gnnmd.analysis.folding`).

The main observable (φ/ψ, or RMSD × Q for proteins; :mod:`gnnmd.analysis.states`) is
reported with what it takes to judge it: its JS divergence, the same for the model with its
network switched off (``priors_only``, simulated from the same starts), the reference's own
noise floor (its halves against each other), and state populations with standard errors.
Units: nm, ps, K, kJ/mol/nm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gnnmd.analysis import folding
from gnnmd.analysis.distributions import histogram, jensen_shannon
from gnnmd.analysis.observables import Observable, term_observables
from gnnmd.analysis.protein import folded_fraction, protein_observables, shipped_native
from gnnmd.analysis.states import (
    STATE_DEFINITIONS,
    main_observable,
    noise_floor,
    populations,
    reference_blocks,
    standard_error,
)
from gnnmd.data.dataset import ForceDataset, spread_indices
from gnnmd.engine import LangevinSettings
from gnnmd.errors import SimulationError
from gnnmd.models import is_trained
from gnnmd.nn.potential import CGPotential, priors_only
from gnnmd.sim import ReplicaRunner
from gnnmd.topology import CGTopology
from gnnmd.torsions import pack_torsions, torsional_forces

MAX_REFERENCE_FRAMES = 20000
#: A replica hotter than this many times the thermostat temperature has exploded.
MAX_TEMPERATURE_FACTOR = 10.0


@dataclass(frozen=True)
class ValidationSettings:
    """How the model is simulated and compared; ``langevin``: the time step (fs), temperature (K)
    and friction (1/ps) of its replicas."""

    replicas: int = 128
    steps: int = 20000
    equilibration_steps: int = 2000
    record_every: int = 50
    langevin: LangevinSettings = field(default_factory=lambda: LangevinSettings(timestep_fs=2.0))
    bins_1d: int = 60
    bins_2d: int = 24
    force_frames: int = 2000
    seed: int = 0
    #: Also simulate the model with its network switched off (key ``priors_only`` of the report).
    priors_only: bool = True

    def __post_init__(self) -> None:
        if self.steps <= self.equilibration_steps:
            raise ValueError(
                f"steps ({self.steps}) must exceed equilibration_steps ({self.equilibration_steps})"
            )
        if self.replicas < 1 or self.record_every < 1:
            raise ValueError("replicas and record_every must be at least 1")


def compare(simulated: Observable, reference: Observable, settings: ValidationSettings) -> tuple[float, list]:
    """JS divergence of two samplings of one observable, and the value range used."""
    dimensions = reference.samples.shape[1]
    if reference.periodic:
        value_range = [(-math.pi, math.pi)] * dimensions
    else:
        both = np.concatenate([simulated.samples, reference.samples])
        value_range = [(float(both[:, d].min()), float(both[:, d].max())) for d in range(dimensions)]
    bins = settings.bins_2d if dimensions == 2 else settings.bins_1d
    p = histogram(simulated.samples, bins, value_range)
    q = histogram(reference.samples, bins, value_range)
    return jensen_shannon(p, q), value_range


def observables_of(topology: CGTopology, frames: np.ndarray, native: np.ndarray | None) -> list[Observable]:
    """Every observable of frames (F, n, 3) nm: RMSD, Q and RMSD-Q first for a protein with a
    ``native`` structure, then the bonded terms' (and φ/ψ)."""
    protein = protein_observables(topology, frames, native) if native is not None else []
    return protein + term_observables(topology, frames)


def compare_frames(
    topology: CGTopology, simulated: np.ndarray, reference: np.ndarray, settings: ValidationSettings
) -> tuple[dict[str, float], list, dict]:
    """JS divergence per observable of simulated vs reference frames (F, n, 3) nm.

    Returns the divergences by observable name, the (simulated, reference, value
    range) triples to plot, and extra report entries: ``folded_fraction`` for a
    shipped protein (see :mod:`gnnmd.analysis.protein`), whose RMSD, Q and joint
    RMSD-Q observables then come first.
    """
    native = shipped_native(topology)
    reference_observables = observables_of(topology, reference, native)
    return compare_with_native(topology, simulated, reference_observables, native, settings)


def compare_with_native(
    topology: CGTopology,
    simulated: np.ndarray,
    ref_all: list[Observable],
    native: np.ndarray | None,
    settings: ValidationSettings,
) -> tuple[dict[str, float], list, dict]:
    """:func:`compare_frames` with the native structure (or None) looked up and the reference's
    observables (:func:`observables_of`) computed once by the caller."""
    sim_all = observables_of(topology, simulated, native)
    extra = {}
    if native is not None:
        extra["folded_fraction"] = {
            label: folded_fraction(next(o.samples for o in observables if o.name == "rmsd_native"))
            for label, observables in (("model", sim_all), ("reference", ref_all))
        }
    divergences, pairs = {}, []
    for sim, ref in zip(sim_all, ref_all, strict=True):
        divergences[ref.name], value_range = compare(sim, ref, settings)
        pairs.append((sim, ref, value_range))
    return divergences, pairs, extra


def simulate(
    model: CGPotential, topology: CGTopology, starts: np.ndarray, settings: ValidationSettings
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Frames (F, n, 3) nm of ``settings.replicas`` replicas started from ``starts`` (R, n, 3),
    and the replica (F,) each frame belongs to.

    Also returns the replicas that failed ({replica: reason}): non-finite, or hotter than
    :data:`MAX_TEMPERATURE_FACTOR` times the thermostat. They are dropped at the first
    check that sees them (their frames from then on are not analysed) and the others go
    on; SimulationError if none is left. An exploding model would otherwise be "validated"
    on frames thousands of nm across.
    """
    langevin = settings.langevin
    runner = ReplicaRunner(
        model, [topology] * len(starts), starts.reshape(-1, 3), langevin, seed=settings.seed
    )
    alive = list(range(len(starts)))
    failed: dict[int, str] = {}

    def check(step: int) -> None:
        limit = [MAX_TEMPERATURE_FACTOR * langevin.temperature_k] * runner.num_replicas
        bad = runner.failures(limit)
        for position, reason in bad.items():
            failed[alive[position]] = f"step {step}: {reason}"
        if len(bad) == runner.num_replicas:
            raise SimulationError(
                f"validation of {topology.name}: every replica failed ({failed}); the model is unstable "
                f"at {langevin.timestep_fs} fs and {langevin.temperature_k} K"
            )
        if bad:
            runner.drop(list(bad))
            for position in sorted(bad, reverse=True):
                del alive[position]

    runner.step(settings.equilibration_steps)
    check(settings.equilibration_steps)
    frames, owners = [], []
    for index in range((settings.steps - settings.equilibration_steps) // settings.record_every):
        runner.step(settings.record_every)
        check(settings.equilibration_steps + (index + 1) * settings.record_every)
        frames.append(runner.positions.detach().cpu().numpy().reshape(len(alive), topology.n_beads, 3))
        owners.append(np.array(alive))
    return np.concatenate(frames), np.concatenate(owners), failed


def frame_force_errors(
    model: CGPotential, dataset: ForceDataset, molecule: int, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per frame (F,), of ``model`` on ``frames`` (indices within the molecule): the mean squared
    force error, (kJ/mol/nm)², and the mean squared error of the generalized forces along the
    molecule's torsions, (kJ/mol/rad)² (:mod:`gnnmd.torsions`; None without torsions)."""
    topology = dataset.topologies[molecule]
    errors, torsion_errors = [], []
    searched: dict = {}  # the molecule's torsions, found once for all chunks
    for chunk in np.array_split(frames, max(1, len(frames) // 256)):
        positions, reference = dataset.frames(molecule, chunk)
        batch = model.pack([topology] * len(chunk))
        dtype = next(model.parameters()).dtype
        x = torch.as_tensor(positions.reshape(-1, 3), dtype=dtype)
        _, forces = model.energy_and_forces(x, batch)
        difference = forces.detach().double() - torch.as_tensor(reference.reshape(-1, 3), dtype=torch.float64)
        errors.append((difference**2).reshape(len(chunk), -1).mean(1).numpy())
        torsions = pack_torsions([topology] * len(chunk), cache=searched)
        if len(torsions.fixed):
            torsion_error = torsional_forces(x, difference, torsions).reshape(len(chunk), -1)
            torsion_errors.append((torsion_error**2).mean(1).numpy())
    return np.concatenate(errors), np.concatenate(torsion_errors) if torsion_errors else None


def force_gain(
    model_errors: np.ndarray, prior_errors: np.ndarray, groups: np.ndarray | None = None,
    quantity: str = "force", unit: str = "kj_per_mol_nm",
) -> dict:  # fmt: skip
    """How much the network lowers the held-out force error below the priors': the gain in
    mean squared error, (kJ/mol/nm)², and the gain in units of its standard error (over the
    frames' independent trajectories ``groups`` (F,) when given and at least two, else over
    contiguous blocks: neighbouring frames of a trajectory are correlated). ``quantity`` and
    ``unit`` name the error (e.g. "torsion", "kj_per_mol_rad") in the RMSE's key."""
    gain = prior_errors - model_errors
    over = "trajectories"
    if groups is None or len(np.unique(groups)) < 2:
        groups, over = reference_blocks(len(gain)), "contiguous blocks"
    error = standard_error(gain, groups)
    return {
        "standard_error_over": over,
        f"{quantity}_rmse_priors_only_{unit}": float(math.sqrt(prior_errors.mean())),
        "mse_gain": float(gain.mean()),
        "mse_gain_standard_error": error,
        "mse_gain_in_standard_errors": float(gain.mean() / error) if error > 0 else float("nan"),
    }


def held_out_frames(
    model: CGPotential, dataset: ForceDataset, molecule: int, limit: int
) -> tuple[np.ndarray, str]:
    """Frames of ``molecule`` the model was not trained on, if its checkpoint says which."""
    training = getattr(model, "metadata", {}).get("training", {})
    count = int(dataset.offsets[molecule + 1] - dataset.offsets[molecule])
    held = training.get("validation_frames")
    if held is not None and Path(training.get("dataset", "")).name == dataset.path.name:
        start = int(dataset.offsets[molecule])
        local = np.array([f - start for f in held if start <= f < start + count], dtype=np.int64)
        # Spread over all of them: the first ``limit`` could all come from one held-out trajectory.
        return local[spread_indices(len(local), min(len(local), limit))], "held-out"
    return spread_indices(count, min(count, limit)), "all (no held-out split recorded)"


def validate_molecule(
    model: CGPotential, dataset: ForceDataset, molecule: int, settings: ValidationSettings, plots: Path | None
) -> dict:
    """Simulate one molecule and compare it with its reference frames; returns its report."""
    topology = dataset.topologies[molecule]
    if dataset.biased_frames(molecule).any():
        raise ValueError(
            f"{dataset.path}: molecule {topology.name!r} holds biased trajectories "
            f"{dataset.biased_trajectories[molecule].tolist()}, whose frames are not Boltzmann samples: "
            "validate against a reference without them"
        )
    count = int(dataset.offsets[molecule + 1] - dataset.offsets[molecule])
    chosen = spread_indices(count, min(count, MAX_REFERENCE_FRAMES))
    reference_frames, _ = dataset.frames(molecule, chosen)
    native = shipped_native(topology)
    reference_observables = observables_of(topology, reference_frames, native)
    starts, start_folded = choose_starts(reference_frames, reference_observables, settings.replicas)
    simulated_frames, replicas, failed = simulate(model, topology, starts, settings)
    divergences, pairs, extra = compare_with_native(
        topology, simulated_frames, reference_observables, native, settings
    )
    if start_folded is not None:
        simulated = next(sim for sim, ref, _ in pairs if ref.name == "rmsd_q")
        extra["folding"] = folding.folding_report(simulated.samples, replicas, start_folded)
    ids = dataset.trajectory_ids[molecule]
    groups = ids[chosen] if ids is not None else None
    baseline = priors_only(model) if settings.priors_only and model.use_priors else None
    extra.update(judge_main_observable(topology, native, starts, pairs, replicas, settings, baseline, groups))
    frames, kind = held_out_frames(model, dataset, molecule, settings.force_frames)
    errors, torsion_errors = frame_force_errors(model, dataset, molecule, frames)
    if "priors_only" in extra:
        alone, torsions_alone = frame_force_errors(baseline, dataset, molecule, frames)
        held_out_ids = None if ids is None else ids[frames]
        extra["priors_only"]["force_gain"] = force_gain(errors, alone, held_out_ids)
        if torsion_errors is not None:
            extra["priors_only"]["torsion_gain"] = force_gain(
                torsion_errors, torsions_alone, held_out_ids, "torsion", "kj_per_mol_rad"
            )
    simulated_ns = settings.replicas * settings.steps * settings.langevin.timestep_ps * 1e-3
    report = {
        "topology": topology.name,
        "reference_frames": int(len(reference_frames)),
        "simulated_frames": int(len(simulated_frames)),
        "simulated_ns": simulated_ns,
        "failed_replicas": {str(k): v for k, v in sorted(failed.items())},
        "js_divergence": divergences,
        **extra,
        "force_rmse_kj_per_mol_nm": float(math.sqrt(errors.mean())),
        "torsion_rmse_kj_per_mol_rad": (
            None if torsion_errors is None else float(math.sqrt(torsion_errors.mean()))
        ),
        "force_frames": kind,
        "force_frame_count": int(len(frames)),
    }
    if plots is not None:
        from gnnmd.analysis.plots import plot_validation

        report["plot"] = str(plot_validation(pairs, settings, plots / f"{topology.name}_validation.png"))
    return report


def choose_starts(
    reference: np.ndarray, reference_observables: list[Observable], replicas: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Start frames (R, n, 3) nm from the reference (F, n, 3) and its observables, and for a
    protein with a native structure (an ``rmsd_q`` observable) whether each started folded (half
    folded, half not: :mod:`gnnmd.analysis.folding`); otherwise spread evenly."""
    rmsd_q = [o.samples for o in reference_observables if o.name == "rmsd_q"]
    if not rmsd_q:
        return reference[spread_indices(len(reference), replicas)], None
    samples = rmsd_q[0]
    chosen = folding.choose_starts(samples, replicas)
    return reference[chosen], folding.is_folded(samples[chosen])


def judge_main_observable(
    topology: CGTopology,
    native: np.ndarray | None,
    starts: np.ndarray,
    pairs: list,
    replicas: np.ndarray,
    settings: ValidationSettings,
    baseline: CGPotential | None = None,
    reference_groups: np.ndarray | None = None,
) -> dict:
    """Report entries of the main observable: noise floor, populations, and those of ``baseline``
    (the model's priors alone, simulated from the same starts) when given.

    ``reference_groups`` ((frames,) the trajectory of each reference frame) make the reference's
    errors and halves follow its independent trajectories; without, contiguous blocks."""
    observables = {reference.name: (simulated, reference) for simulated, reference, _ in pairs}
    main = main_observable(list(observables))
    if main is None:
        return {}
    simulated, reference = observables[main]
    if reference_groups is not None and len(np.unique(reference_groups)) < 2:
        reference_groups = None
    blocks = reference_groups if reference_groups is not None else reference_blocks(len(reference.samples))

    def divergence(a: np.ndarray, b: np.ndarray) -> float:
        return compare(replace(reference, samples=a), replace(reference, samples=b), settings)[0]

    out = {
        "main_observable": main,
        "state_definitions": STATE_DEFINITIONS[main],
        "noise_floor": noise_floor(reference.samples, divergence, reference_groups),
        "reference_groups": (
            "trajectories" if reference_groups is not None else f"{len(np.unique(blocks))} contiguous blocks"
        ),
        "populations": {
            "model": populations(main, simulated.samples, replicas),
            "reference": populations(main, reference.samples, blocks),
        },
    }
    if baseline is not None:
        frames, owners, failed = simulate(baseline, topology, starts, settings)
        alone = next(o for o in observables_of(topology, frames, native) if o.name == main)
        out["priors_only"] = {
            "js_divergence": {main: compare(alone, reference, settings)[0]},
            "populations": populations(main, alone.samples, owners),
            "failed_replicas": {str(k): v for k, v in sorted(failed.items())},
        }
    return out


def validate(
    model: CGPotential, dataset: ForceDataset, settings: ValidationSettings, plots: Path | None = None
) -> dict:
    """The validation report of ``model`` on every molecule of ``dataset`` (JSON-ready)."""
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
    return {
        "schema": "gnnmd-validation",
        "schema_version": 2,  # 2: settings.langevin holds timestep_fs, temperature_k, friction_per_ps
        "model": getattr(model, "source", "<memory>"),
        "backend": model.network.backend,
        "trained": is_trained(model),
        "reference": str(dataset.path),
        "settings": asdict(settings),
        "molecules": {
            name: validate_molecule(model, dataset, index, settings, plots)
            for index, name in enumerate(dataset.molecules)
        },
    }
