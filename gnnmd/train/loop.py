"""The force-matching training loop, with exact resume and torchrun data parallelism.

Loss (:mod:`gnnmd.train.losses`): mean squared error of the model's forces (priors +
network) against the reference, (kJ/mol/nm)²; with the priors fixed the network learns
F_ref - F_prior. Optional terms: the generalized forces along the bonded graph's torsions
(``torsion_weight``) and, for data with energies, the per-frame energy error relative to the
molecule's mean error in the batch, the constant being fitted in closed form to the training
frames before and after every epoch (:func:`fit_type_energies`). Each epoch visits the
training frames in an order fixed by (seed, epoch), so a resumed run continues exactly as an
uninterrupted one; under torchrun DistributedDataParallel averages the gradients.

The best epoch has the lowest validation loss, or with ``select_by "free_energy"`` the lowest
held-out free-energy score (force loss alone is dominated by the reference's force noise and
can improve while the free energy gets worse); early stopping follows the same criterion.
With ``weight_average_decay`` validation, score and ``best.pt`` use an exponential moving
average of the weights (:mod:`gnnmd.train.averaging`).

Files: ``train_state.pt`` (everything to resume, rewritten atomically every epoch),
``best.pt`` (gnnmd checkpoint of the best epoch), ``metrics.csv`` and the learning curve
(:mod:`gnnmd.train.metrics`). Trust: rank 0 holds the folder's lock for the whole run; the
state file is read with ``weights_only=True`` and records the run's identity (dataset SHA-256,
model configuration, vocabulary, temperature, training config): a resume that differs is
refused, naming the field. A non-finite loss stops training with :class:`TrainingError`
before anything of that epoch is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from gnnmd.data.dataset import ForceDataset
from gnnmd.distributed import all_reduce_sum, joined_world, local_device, on_root
from gnnmd.errors import TrainingError
from gnnmd.models import save_checkpoint
from gnnmd.nn.potential import CGPotential
from gnnmd.runfolder import (
    RunFolderLock,
    atomic_write_bytes,
    claim,
    file_sha256,
    require_fresh,
)
from gnnmd.train.averaging import WeightAverage
from gnnmd.train.batches import BatchLoader, ForceBatch, ForceModel
from gnnmd.train.config import TrainingConfig, check_dataset
from gnnmd.train.energies import fit_type_energies
from gnnmd.train.losses import SUM_FIELDS, ErrorSums, molecule_mean_errors, squared_errors, weighted_loss
from gnnmd.train.metrics import write_metrics
from gnnmd.train.resume import read_state
from gnnmd.train.schedule import make_schedule
from gnnmd.train.split import biased_frames, split_frames, trajectory_groups

STATE_FILE = "train_state.pt"
BEST_FILE = "best.pt"
#: Builds the free-energy score from the held-out global frame indices; the score maps the
#: model to a number, lower is better.
ScorerFactory = Callable[[np.ndarray], Callable[[CGPotential], float]]


class Trainer:
    """Trains ``model``'s network on ``dataset`` and writes results to ``output_dir``.

    Args:
        model: the potential; its priors stay fixed, its network is trained.
        dataset: reference frames.
        config: optimisation settings.
        output_dir: where state, checkpoints and metrics go.
        device: "cpu" or "cuda" ("cuda" is the rank's ``cuda:LOCAL_RANK`` under torchrun).
        metadata: stored in ``best.pt`` (e.g. data provenance); ``trained`` is set here.
        scorer_for: builds the held-out free-energy score from the validation frames; needed
            with ``config.select_by == "free_energy"``.
        prepare: adjusts the model once before the first epoch of a new run (e.g. refines its
            dihedral priors, :mod:`gnnmd.train.prior_refinement`); returns entries for the
            metadata. The prior tables are part of the training state, so a resumed run keeps them.
    """

    def __init__(
        self,
        model: CGPotential,
        dataset: ForceDataset,
        config: TrainingConfig,
        output_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        scorer_for: ScorerFactory | None = None,
        prepare: Callable[[CGPotential], dict] | None = None,
    ) -> None:
        self.device = local_device(device)  # cuda:LOCAL_RANK under torchrun
        self.rank, self.world = joined_world()  # the caller joins torchrun's group first
        self.model = model.to(self.device).train()
        self.dtype = next(model.network.parameters()).dtype
        self.dataset = dataset
        self.config = config
        self.output_dir = Path(output_dir)
        self.metadata = dict(metadata or {})
        self.prepare = prepare
        self.groups = trajectory_groups(dataset)
        self.train_frames, self.val_frames = split_frames(
            len(dataset), config, self.groups, biased_frames(dataset)
        )
        check_dataset(config, dataset)
        self.loader = BatchLoader(dataset, model, self.device, energies=config.uses_energies)
        self.scorer: Callable[[CGPotential], float] | None = None
        if config.select_by == "free_energy":
            if scorer_for is None:
                raise ValueError('select_by "free_energy" needs scorer_for (the held-out free-energy score)')
            self.scorer = scorer_for(self.val_frames)
        self.frames_by_molecule: dict[int, np.ndarray] = {}
        if config.uses_energies:
            self.frames_by_molecule = _frames_by_molecule(dataset, self.train_frames)
            self.refit_type_energies()
        self.force_model: nn.Module = ForceModel(model)
        if self.world > 1:
            # Parameters that only shift the energy (the readout's last bias) get no gradient from a
            # force loss; without this DDP would wait for them and never average the gradients.
            self.force_model = nn.parallel.DistributedDataParallel(
                self.force_model, find_unused_parameters=True
            )
        self._set_up_optimisation()
        self.epoch = 0
        self.best_val = float("inf")  # validation force RMSE of the best epoch, kJ/mol/nm
        self.best_loss = float("inf")  # its validation loss, which picks the best epoch
        self.best_energy: float | None = None  # its validation energy RMSE, kJ/mol (energy training)
        self.best_score = float("inf")  # its held-out free-energy score (select_by "free_energy")
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.best_written = False  # whether this run (or the one it resumes) wrote best.pt
        self._identity: dict | None = None

    def _set_up_optimisation(self) -> None:
        """AdamW on the network's weights, its learning-rate schedule and the weight average."""
        config, network = self.config, self.model.network
        self.optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        decay = config.weight_average_decay
        self.average = WeightAverage(network, decay) if decay > 0 else None
        self.scheduler = make_schedule(
            self.optimizer, config.lr_schedule, factor=config.lr_decay_factor, patience=config.lr_patience,
            final_rate=config.final_learning_rate,
            total_steps=config.epochs * math.ceil(len(self.train_frames) / config.batch_size),
        )  # fmt: skip

    def identity(self) -> dict:
        """What makes a resumed run the same run (besides the training config): data and model."""
        if self._identity is None:
            self._identity = {
                "dataset_sha256": file_sha256(self.dataset.path),
                "molecules": list(self.dataset.molecules),
                "model_config": dataclasses.asdict(self.model.config),
                "vocabulary": list(self.model.vocabulary),
                "temperature_k": self.metadata.get("temperature_k"),
                # Refined dihedral priors (gnnmd.train.prior_refinement) are part of the model.
                "prior_refinement": (self.metadata.get("prior_refinement") or {}).get("settings"),
            }
        return self._identity

    # -- one epoch --------------------------------------------------------------

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's batches of global frame indices (same on every rank)."""
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(self.train_frames)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def refit_type_energies(self) -> None:
        """Re-fit the per-type reference energies to the training frames (energy training only)."""
        fitted = fit_type_energies(self.model, self.loader, self.frames_by_molecule, self.dtype)
        self.model.network.type_energy.copy_(fitted)

    def errors(self, batch: ForceBatch) -> Tensor:
        """The error sums of one batch (:data:`gnnmd.train.losses.SUM_FIELDS`)."""
        energies, forces = self.force_model(batch.positions, batch.graphs)
        offsets = None
        if batch.energies is not None and self.force_model.training:
            offsets = molecule_mean_errors(
                (energies - batch.energies).detach(), batch.molecules, len(self.dataset.molecules)
            )
        return squared_errors(batch, energies, forces, offsets)

    def loss(self, errors: Tensor) -> Tensor:
        """The weighted loss from :meth:`errors` sums (:func:`gnnmd.train.losses.weighted_loss`)."""
        return weighted_loss(self.config, errors)

    def train_epoch(self, epoch: int) -> ErrorSums:
        """One pass over the training frames; returns their errors summed over all ranks."""
        self.force_model.train()
        # Summed where computed: no synchronisation per batch.
        totals = torch.zeros(len(SUM_FIELDS), dtype=torch.float64, device=self.device)
        for batch_indices in self.global_batches(epoch):
            shard = batch_indices[self.rank :: self.world]
            errors = self.errors(self.loader(shard, self.dtype))
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(errors).backward()
            self.optimizer.step()
            self.scheduler.after_step()
            if self.average is not None:
                self.average.update()
            totals += errors.detach().double()
        return ErrorSums(all_reduce_sum(totals).cpu())

    def score(self) -> float | None:
        """The held-out free-energy score of the current model (rank 0 computes, all ranks get it),
        or None when epochs are selected by force loss."""
        if self.scorer is None:
            return None
        value = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.rank == 0:
            self.model.eval()
            value += self.scorer(self.model)
            self.model.train()
        return float(all_reduce_sum(value))

    def validate(self) -> ErrorSums:
        """Errors of the held-out frames, summed over all ranks."""
        self.force_model.eval()
        totals = torch.zeros(len(SUM_FIELDS), dtype=torch.float64, device=self.device)
        frames = self.val_frames[self.rank :: self.world]
        for start in range(0, len(frames), self.config.batch_size):
            batch = self.loader(frames[start : start + self.config.batch_size], self.dtype)
            totals += self.errors(batch).detach().double()
        return ErrorSums(all_reduce_sum(totals).cpu())

    # -- the run ----------------------------------------------------------------

    def run(self, resume: bool = True) -> list[dict]:
        """Train until ``config.epochs`` or early stopping; returns the per-epoch metrics.

        Rank 0 holds the output folder's lock throughout. ``resume`` continues from
        the folder's state file; without one the folder must be new or empty.
        Without ``resume`` an existing run in the folder is replaced.

        Raises:
            RunFolderBusyError: another process trains (or simulates) in the folder.
            TrainingError: a non-finite loss (nothing of that epoch is written).
        """
        lock = RunFolderLock(self.output_dir)
        on_root(lambda: self._open_folder(lock, resume))
        try:
            if resume and (self.output_dir / STATE_FILE).is_file():
                self.load_state()
            elif self.prepare is not None:
                if self.world > 1:  # every rank would prepare its own copy, and differently
                    raise TrainingError(
                        "preparing the model (--refine-dihedral-priors) runs on one process: start the run "
                        "without torchrun (one epoch is enough; the prepared model goes into its state), "
                        "then resume under torchrun"
                    )
                self.metadata.update(self.prepare(self.model))
            return self._train()
        finally:
            lock.release()

    def _open_folder(self, lock: RunFolderLock, resume: bool) -> None:
        claim(lock)
        if resume and not (self.output_dir / STATE_FILE).is_file():
            require_fresh(self.output_dir, STATE_FILE, "")

    def _train(self) -> list[dict]:
        while self.epoch < self.config.epochs and self.bad_epochs < self.config.early_stopping_patience:
            started = time.perf_counter()
            train = self.train_epoch(self.epoch)
            self._require_finite(train, "training")
            if self.config.uses_energies:
                self.refit_type_energies()
            with self.averaged():
                val = self.validate()
                self._require_finite(val, "validation")
                val_loss = float(self.loss(val.sums))
                score = self.score()
                improved = val_loss < self.best_loss if score is None else score < self.best_score
                if improved and self.rank == 0:
                    self.save_best(self.epoch + 1, val, score)
            self.scheduler.after_epoch(val_loss)
            self.epoch += 1
            row = {
                "epoch": self.epoch,
                "train_force_rmse": train.force_rmse,
                "val_force_rmse": val.force_rmse,
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
                "train_energy_rmse": train.energy_rmse,
                "val_energy_rmse": val.energy_rmse,
                "val_loss": val_loss,
                "val_free_energy_js": score,
                "train_torsion_rmse": train.torsion_rmse,
                "val_torsion_rmse": val.torsion_rmse,
            }
            self.history.append(row)
            if improved:
                self.best_loss, self.best_val = val_loss, row["val_force_rmse"]
                self.best_energy = row["val_energy_rmse"]
                self.best_score = float("inf") if score is None else score
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            if self.rank == 0:
                self.save_state()
                self.write_metrics()
            self.best_written = self.best_written or improved
        return self.history

    def _require_finite(self, errors: ErrorSums, stage: str) -> None:
        """Stop on a non-finite error sum: weights or data went bad; the last epoch's files stay."""
        if bool(torch.isfinite(errors.sums).all()):
            return
        raise TrainingError(
            f"epoch {self.epoch + 1}: the {stage} loss is not finite (force RMSE {errors.force_rmse}); "
            f"nothing of this epoch was written, {self.output_dir / STATE_FILE} holds epoch {self.epoch}. "
            "Check the data (gnnmd validates it on open) or lower --learning-rate"
        )

    # -- files ------------------------------------------------------------------

    def averaged(self):
        """A block in which the network holds its weight average (or its weights, without one)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def save_best(self, epoch: int, val: ErrorSums, score: float | None) -> None:
        """Write the model as it is now (the best epoch, ``epoch``) to ``best.pt``."""
        metadata = dict(self.metadata)
        metadata.update(
            trained=True,
            training={
                "config": dataclasses.asdict(self.config),
                "epoch": epoch,
                "val_force_rmse_kj_per_mol_nm": val.force_rmse,
                "val_energy_rmse_kj_per_mol": val.energy_rmse,
                "val_torsion_rmse_kj_per_mol_rad": val.torsion_rmse,
                "selected_by": self.config.select_by,
                "val_free_energy_js": score,
                "split": "whole trajectories" if self.groups is not None else "random frames",
                "train_frames": int(len(self.train_frames)),
                "val_frames": int(len(self.val_frames)),
                # Global frame indices, so that validation can measure forces on unseen frames.
                "validation_frames": [int(i) for i in self.val_frames],
                "dataset": str(self.dataset.path),
                "molecules": list(self.dataset.molecules),
                "processes": self.world,
            },
        )
        save_checkpoint(self.model, self.output_dir / BEST_FILE, metadata)

    def state(self) -> dict:
        return {
            "network": self.model.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_val": self.best_val,
            "best_loss": self.best_loss,
            "best_energy": self.best_energy,
            "best_score": self.best_score,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "config": dataclasses.asdict(self.config),
            "identity": self.identity(),
            "best_written": self.best_written,
            "weight_average": None if self.average is None else self.average.state(),
            "priors": self.model.priors.tables(),
            "prior_refinement": self.metadata.get("prior_refinement"),
        }

    def save_state(self) -> None:
        state = self.state()
        atomic_write_bytes(self.output_dir / STATE_FILE, lambda file: torch.save(state, file))

    def load_state(self) -> None:
        state = read_state(self.output_dir / STATE_FILE, self.device, self.config, self.identity())
        self.model.network.load_state_dict(state["network"])
        if "priors" in state:  # states from before the priors were saved: refitted identically
            self.model.priors.set_values(state["priors"])
        if state.get("prior_refinement") is not None:
            self.metadata["prior_refinement"] = state["prior_refinement"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_val, self.bad_epochs = state["epoch"], state["best_val"], state["bad_epochs"]
        # States from force-only trainers before the weighted loss: the loss was the force MSE.
        self.best_loss = state.get("best_loss", self.config.force_weight * self.best_val**2)
        self.best_energy = state.get("best_energy")
        self.best_score = state.get("best_score", float("inf"))
        self.history = list(state["history"])
        self.best_written = bool(state.get("best_written", False))
        if self.average is not None:
            self.average.load(state["weight_average"])

    def write_metrics(self) -> None:
        write_metrics(self.output_dir, self.history)


def _frames_by_molecule(dataset: ForceDataset, frames: np.ndarray) -> dict[int, np.ndarray]:
    """Global frame indices grouped by molecule: {molecule index: (F_m,) int64}."""
    by_molecule: dict[int, list[int]] = {}
    for index in frames:
        by_molecule.setdefault(dataset.locate(int(index))[0], []).append(int(index))
    return {m: np.array(f) for m, f in by_molecule.items()}
