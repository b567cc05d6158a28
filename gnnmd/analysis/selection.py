"""A held-out free-energy measure, for choosing among trained models (epochs, sizes).

Force matching's loss is dominated by the noise of the reference forces: on alanine
dipeptide a network can lower the held-out force error by several standard errors and
still move the φ/ψ free energy away from the reference. So models are chosen by what they
are for: short simulations started from held-out reference frames, whose main observable
(φ/ψ, or CA RMSD × Q for a protein; :mod:`gnnmd.analysis.states`; else every bonded term)
is compared with the held-out frames' by Jensen-Shannon divergence. The score is the mean
over molecules; lower is better. The simulations are short, so the score carries a
sampling bias that is about the same for every candidate: it ranks, it does not judge
(``gnnmd validate`` does, with noise floor and errors).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gnnmd.analysis.observables import Observable
from gnnmd.analysis.protein import shipped_native
from gnnmd.analysis.states import main_observable
from gnnmd.analysis.validate import (
    MAX_REFERENCE_FRAMES,
    ValidationSettings,
    choose_starts,
    compare_with_native,
    observables_of,
    simulate,
)
from gnnmd.data.dataset import ForceDataset, spread_indices
from gnnmd.nn.potential import CGPotential
from gnnmd.topology import CGTopology

#: Short runs: 64 replicas × 10 ps at 2 fs after 2 ps of equilibration.
SELECTION_SETTINGS = ValidationSettings(
    replicas=64, steps=6000, equilibration_steps=1000, record_every=50, priors_only=False
)


def selection_settings(replicas: int, steps: int, temperature_k: float, seed: int) -> ValidationSettings:
    """:data:`SELECTION_SETTINGS` for ``replicas`` × ``steps`` (a sixth of them equilibration,
    about 100 frames per replica) at ``temperature_k``."""
    return replace(
        SELECTION_SETTINGS, replicas=replicas, steps=steps, equilibration_steps=steps // 6,
        record_every=max(1, (steps - steps // 6) // 100), seed=seed,
        langevin=replace(SELECTION_SETTINGS.langevin, temperature_k=temperature_k),
    )  # fmt: skip


@dataclass(frozen=True)
class _HeldOutMolecule:
    name: str
    topology: CGTopology
    reference: list[Observable]  # observables of the held-out frames
    starts: np.ndarray  # (R, n, 3) nm
    native: np.ndarray | None


class HeldOutFreeEnergy:
    """Scores a model by the JS divergence of its simulated main observable to held-out frames.

    Args:
        dataset: the training data.
        held_out: global indices of frames the model is not trained on.
        settings: simulation and histogram settings (temperature K, time step fs, replicas).

    Raises:
        ValueError: no frames are held out.
    """

    def __init__(
        self, dataset: ForceDataset, held_out: np.ndarray, settings: ValidationSettings = SELECTION_SETTINGS
    ) -> None:
        self.dataset = dataset
        self.settings = settings
        self.molecules: list[_HeldOutMolecule] = []
        held_out = np.sort(np.asarray(held_out, dtype=np.int64))
        for molecule, name in enumerate(dataset.molecules):
            start, stop = int(dataset.offsets[molecule]), int(dataset.offsets[molecule + 1])
            local = held_out[(held_out >= start) & (held_out < stop)] - start
            if len(local) == 0:
                continue
            local = local[spread_indices(len(local), min(len(local), MAX_REFERENCE_FRAMES))]
            frames, _ = dataset.frames(molecule, local)
            topology = dataset.topologies[molecule]
            native = shipped_native(topology)
            # Computed once: every epoch's score compares with the same held-out frames.
            reference = observables_of(topology, frames, native)
            starts, _ = choose_starts(frames, reference, settings.replicas)
            self.molecules.append(_HeldOutMolecule(name, topology, reference, starts, native))
        if not self.molecules:
            raise ValueError(f"{dataset.path}: no held-out frames to score models on")

    def divergences(self, model: CGPotential) -> dict[str, float]:
        """Per molecule, the JS divergence of its main observable (else the mean over its bonded
        terms) between the model's short simulation and the held-out frames."""
        out = {}
        for molecule in self.molecules:
            frames, _, _ = simulate(model, molecule.topology, molecule.starts, self.settings)
            divergences, _, _ = compare_with_native(
                molecule.topology, frames, molecule.reference, molecule.native, self.settings
            )
            main = main_observable(list(divergences))
            out[molecule.name] = divergences[main] if main else float(np.mean(list(divergences.values())))
        return out

    def __call__(self, model: CGPotential) -> float:
        """The mean over molecules of :meth:`divergences` (lower is better)."""
        return float(np.mean(list(self.divergences(model).values())))
