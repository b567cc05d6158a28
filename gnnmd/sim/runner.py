"""The replica runner: R replicas (same or different proteins) stepped as one packed graph.

Every step makes exactly one model call over all replicas. Replicas are packed
back to back (never padded) and may be different proteins. Each replica has
its own thermostat temperature and friction, and its own noise, keyed by its
*global* replica index (:mod:`gnnmd.sim.noise`): replica r's trajectory does
not depend on which replicas share its batch or its process.

The neighbour list is a Verlet list with a skin (:mod:`gnnmd.neighbors.verlet`),
rebuilt per replica only when one of its beads moved more than half the skin;
forces equal those of a per-step rebuild bit for bit. ``skin_nm=0`` filters all
candidate pairs every step instead (the model's own path). A force provider
(:mod:`gnnmd.engine.forces`) passed as ``forces`` replaces both: the static-shape
IPU path plugs in that way.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from gnnmd.engine.forces import ForceProvider, ForceProviderFactory, release
from gnnmd.engine.settings import LangevinSettings
from gnnmd.errors import SimulationError
from gnnmd.neighbors.verlet import VerletList
from gnnmd.nn.potential import CGPotential
from gnnmd.sim.integrators import BAOAB
from gnnmd.sim.noise import GENERATOR, CounterNoise
from gnnmd.static.stepper import StaticStepper
from gnnmd.systems import System
from gnnmd.topology import CGTopology
from gnnmd.units import BOLTZMANN_KJ_PER_MOL_K

#: Default Verlet skin (nm). At 300 K and 4 fs a chignolin replica's list is rebuilt about once
#: per 40 steps, and a 1ENH list holds 1.4x the pairs inside a 1.2 nm cutoff (benchmarks/RESULTS.md).
DEFAULT_SKIN_NM = 0.2


def _per_replica(values: Sequence[float] | None, default: float, count: int, name: str) -> list[float]:
    if values is None:
        return [float(default)] * count
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} values; give one, or one per replica ({count})")
    for index, value in enumerate(values):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0; replica {index} has {value}")
    return values


class ReplicaRunner:
    """Batched Langevin (BAOAB) dynamics of many replicas.

    Args:
        model: the potential (moved to ``device`` and ``dtype``; do not share it
            with code that needs another dtype).
        topologies: one per replica, in order.
        positions_nm: (N, 3) nm initial positions of all beads, replicas back to back.
        settings: time step and default thermostat (default: LangevinSettings()).
        device: "cpu" or "cuda[:k]".
        dtype: torch.float32 or torch.float64.
        seed: keys the initial velocities and the thermostat noise.
        thermostat_temperatures_k: per-replica thermostat temperature in K (one
            value for all, or one per replica); default ``settings.temperature_k``.
        frictions_per_ps: per-replica friction in 1/ps; default ``settings.friction_per_ps``.
        skin_nm: Verlet skin in nm (0: filter all candidates every step).
        replica_ids: global index of each replica (keys its noise); default 0..R-1.
            A shard of a larger run passes the global indices of its replicas.
        cuda_graph: capture each step in CUDA graphs (CUDA devices only; see
            :mod:`gnnmd.static.stepper`).
        forces: a force-provider factory (:mod:`gnnmd.engine.forces`) that computes the
            forces instead of the model over a Verlet list; ``skin_nm`` is then 0 and CUDA
            graphs do not apply.
    """

    def __init__(
        self,
        model: CGPotential,
        topologies: Sequence[CGTopology],
        positions_nm: np.ndarray | Tensor,
        settings: LangevinSettings | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        *,
        thermostat_temperatures_k: Sequence[float] | None = None,
        frictions_per_ps: Sequence[float] | None = None,
        skin_nm: float = DEFAULT_SKIN_NM,
        replica_ids: Sequence[int] | None = None,
        cuda_graph: bool = False,
        forces: ForceProviderFactory | None = None,
    ) -> None:
        self.device = torch.device(device)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not skin_nm >= 0:
            raise ValueError(f"skin_nm must be >= 0 nm, got {skin_nm}")
        if forces is not None and cuda_graph:
            raise ValueError("CUDA graphs capture the runner's own force path, not a force provider's")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device; the runner is on {self.device}")
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype)
        self.settings = settings if settings is not None else LangevinSettings()
        self.seed = int(seed)
        self.skin_nm = 0.0 if forces is not None else float(skin_nm)
        self.force_factory = forces
        self.provider: ForceProvider | None = None
        self.cuda_graph = bool(cuda_graph)
        count = len(topologies)
        if count < 1:
            raise ValueError("a runner needs at least one replica")
        ids = list(range(count)) if replica_ids is None else [int(i) for i in replica_ids]
        if len(ids) != count or len(set(ids)) != count or min(ids) < 0:
            raise ValueError(f"replica_ids must be {count} distinct non-negative ints, got {ids}")
        self.replica_ids = ids
        self.target_temperatures_k = _per_replica(
            thermostat_temperatures_k, self.settings.temperature_k, count, "thermostat_temperatures_k"
        )
        self.frictions_per_ps = _per_replica(
            frictions_per_ps, self.settings.friction_per_ps, count, "frictions_per_ps"
        )
        self.steps_done = 0
        self._setup(list(topologies))
        positions = torch.as_tensor(positions_nm, dtype=dtype, device=self.device)
        n_beads = int(self.batch.ptr[-1])
        if positions.shape != (n_beads, 3):
            raise ValueError(f"positions_nm has shape {tuple(positions.shape)}, expected ({n_beads}, 3)")
        if not bool(torch.isfinite(positions).all()):
            raise ValueError("positions_nm contains NaN or infinite values")
        self.positions = positions.clone()
        self.velocities = self.integrator.maxwell_boltzmann()
        self.energies, self.forces = self.evaluate(self.positions)

    def _setup(self, topologies: list[CGTopology]) -> None:
        """Build everything that depends on which replicas are in the batch."""
        self.topologies = topologies
        self.batch = self.model.pack(topologies, self.device)
        counts = self.batch.ptr[1:] - self.batch.ptr[:-1]
        ids = torch.tensor(self.replica_ids, dtype=torch.int64, device=self.device)
        replica_of_bead = ids[self.batch.graph_index]
        bead_in_replica = (
            torch.arange(int(self.batch.ptr[-1]), device=self.device)
            - self.batch.ptr[:-1][self.batch.graph_index]
        )
        masses = np.concatenate([t.masses_amu for t in topologies])
        self.masses = torch.as_tensor(masses, dtype=self.dtype, device=self.device)
        per_bead = {
            name: torch.tensor(values, dtype=self.dtype, device=self.device).repeat_interleave(counts)
            for name, values in (("t", self.target_temperatures_k), ("g", self.frictions_per_ps))
        }
        noise = CounterNoise(self.seed, replica_of_bead, bead_in_replica, self.dtype)
        self.integrator = BAOAB(self.masses, self.settings.timestep_ps, per_bead["t"], per_bead["g"], noise)
        self.verlet = None
        if self.force_factory is not None:
            release(self.provider)
            self.provider = self.force_factory(self.model, topologies, self.device)
        elif self.skin_nm > 0:
            self.verlet = VerletList(
                self.batch.pairs, self.batch.graph_index, len(topologies), self.model.cutoff_nm, self.skin_nm
            )
        self._graphed = None

    @classmethod
    def replicas_of(cls, model: CGPotential, system: System, replicas: int, **kwargs) -> ReplicaRunner:
        """``replicas`` copies of ``system``, all starting from its native structure."""
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        positions = np.tile(system.positions_nm, (replicas, 1))
        return cls(model, [system.topology] * replicas, positions, **kwargs)

    @property
    def num_replicas(self) -> int:
        return int(self.batch.ptr.shape[0] - 1)

    def bead_ranges(self) -> list[tuple[int, int]]:
        """[start, stop) bead range of each replica in the packed arrays."""
        bounds = self.batch.ptr.tolist()
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def evaluate(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (R,) kJ/mol and forces (N, 3) kJ/mol/nm at ``positions`` (N, 3) nm.

        With a Verlet skin the lists of replicas that moved too far are rebuilt first.
        """
        if self.provider is not None:
            return self.provider(positions)
        if self.verlet is None:
            return self.model.energy_and_forces(positions, self.batch)
        self.verlet.update(positions)
        with torch.enable_grad():
            x = positions.detach().requires_grad_(True)
            pairs, distances = self.model.neighbor_distances(x, self.verlet.pairs, self.batch.graph_index)
            energy = self.model.energy_from_pairs(x, self.batch, pairs, distances)
            gradient = torch.autograd.grad([energy.sum()], [x], allow_unused=True)[0]
        if gradient is None:
            gradient = torch.zeros_like(x)
        return energy.detach(), -gradient

    def step(self, steps: int = 1) -> None:
        """Advance every replica by ``steps`` BAOAB steps (one force call each)."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if self.cuda_graph:
            if self._graphed is None:
                self._graphed = StaticStepper(self, capture=True)
            self._graphed.step(steps)
            return
        for _ in range(steps):
            self.positions, velocities = self.integrator.drift(
                self.positions, self.velocities, self.forces, self.steps_done
            )
            self.energies, self.forces = self.evaluate(self.positions)
            self.velocities = self.integrator.kick(velocities, self.forces)
            self.steps_done += 1

    def noise_description(self) -> str:
        """The thermostat noise's generator and what draws it, e.g. ``philox4x32-10 (native-cpu)``."""
        return f"{GENERATOR} ({self.integrator.noise.implementation})"

    def release(self) -> None:
        """Free what the force provider holds (an IPU, an executable); nothing otherwise."""
        release(self.provider)

    def neighbor_list_builds(self) -> int:
        """Per-replica Verlet list builds summed over replicas (steps + 1 per replica without a skin)."""
        if self.verlet is None:
            return (self.steps_done + 1) * self.num_replicas
        return int(self.verlet.builds.sum())

    def kinetic_energies(self) -> Tensor:
        """(R,) kinetic energy of each replica, kJ/mol."""
        kinetic = 0.5 * self.masses[:, None] * self.velocities * self.velocities
        per_replica = torch.zeros(self.num_replicas, dtype=self.dtype, device=self.device)
        return per_replica.index_add_(0, self.batch.graph_index, kinetic.sum(dim=1))

    def temperatures_k(self) -> Tensor:
        """(R,) instantaneous kinetic temperature of each replica, K (3 degrees of freedom per bead)."""
        beads = (self.batch.ptr[1:] - self.batch.ptr[:-1]).to(self.dtype)
        return 2.0 * self.kinetic_energies() / (3.0 * beads * BOLTZMANN_KJ_PER_MOL_K)

    def failures(self, max_temperature_k: Sequence[float] | None = None) -> dict[int, str]:
        """Unhealthy replicas, by position in this batch: {index: reason}.

        A replica fails when its positions, velocities or energy are not finite,
        or when its kinetic temperature exceeds ``max_temperature_k`` (K, one
        value per replica, or None for no limit).
        """
        finite = torch.isfinite(self.positions).all(dim=1) & torch.isfinite(self.velocities).all(dim=1)
        finite_count = torch.zeros(self.num_replicas, dtype=torch.int64, device=self.device)
        finite_count.index_add_(0, self.batch.graph_index, finite.to(torch.int64))
        beads = self.batch.ptr[1:] - self.batch.ptr[:-1]
        states = (finite_count == beads).tolist()
        energies = torch.isfinite(self.energies).tolist()
        temperatures = self.temperatures_k().tolist()
        limits = max_temperature_k if max_temperature_k is not None else [float("inf")] * self.num_replicas
        out: dict[int, str] = {}
        for index in range(self.num_replicas):
            if not states[index]:
                out[index] = "non-finite positions or velocities"
            elif not energies[index]:
                out[index] = "non-finite energy"
            elif temperatures[index] > limits[index]:
                out[index] = f"temperature {temperatures[index]:.4g} K above the limit {limits[index]:.4g} K"
        return out

    def check_finite(self) -> None:
        """Raise SimulationError naming every replica (global index) with non-finite state or energy."""
        bad = self.failures()
        if bad:
            replicas = [self.replica_ids[i] for i in sorted(bad)]
            raise SimulationError(
                f"replica(s) {replicas} have non-finite energy or positions after step "
                f"{self.steps_done}; try a smaller --dt-fs"
            )

    def drop(self, indices: Sequence[int]) -> None:
        """Remove the replicas at batch positions ``indices``; the others continue unchanged.

        Their noise is keyed by global index, so the remaining trajectories are
        exactly those they would have been with the dropped replicas still there.
        """
        drop = sorted(set(int(i) for i in indices))
        if not drop:
            return
        if drop[0] < 0 or drop[-1] >= self.num_replicas:
            raise ValueError(f"replica positions {drop} out of range 0..{self.num_replicas - 1}")
        if len(drop) == self.num_replicas:
            raise SimulationError("cannot drop every replica: none would be left to simulate")
        keep = torch.ones(self.num_replicas, dtype=torch.bool, device=self.device)
        keep[drop] = False
        keep_list = keep.tolist()
        bead_keep = keep[self.batch.graph_index]
        old_verlet = self.verlet

        def kept(values: list) -> list:
            return [v for v, k in zip(values, keep_list, strict=True) if k]

        self.replica_ids = kept(self.replica_ids)
        self.target_temperatures_k = kept(self.target_temperatures_k)
        self.frictions_per_ps = kept(self.frictions_per_ps)
        self._setup(kept(self.topologies))
        self.positions = self.positions[bead_keep].clone()
        self.velocities = self.velocities[bead_keep].clone()
        self.forces = self.forces[bead_keep].clone()
        self.energies = self.energies[keep].clone()
        if old_verlet is not None:
            self.verlet = old_verlet.select_graphs(keep, self.batch.pairs, self.batch.graph_index)

    def state(self) -> dict:
        """The dynamical state (CPU tensors): enough to continue exactly, with the same topologies."""
        return {
            "step": self.steps_done,
            "seed": self.seed,
            "noise": GENERATOR,
            "timestep_fs": self.settings.timestep_fs,
            "dtype": str(self.dtype).replace("torch.", ""),
            "replica_ids": list(self.replica_ids),
            "beads": [t.n_beads for t in self.topologies],
            "systems": [t.name for t in self.topologies],
            "thermostat_temperatures_k": list(self.target_temperatures_k),
            "frictions_per_ps": list(self.frictions_per_ps),
            "positions_nm": self.positions.detach().cpu().clone(),
            "velocities_nm_per_ps": self.velocities.detach().cpu().clone(),
            "forces_kj_per_mol_nm": self.forces.detach().cpu().clone(),
            "energies_kj_per_mol": self.energies.detach().cpu().clone(),
        }

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state` (validated by :func:`gnnmd.sim.checkpoint.load_checkpoint`)."""
        self.steps_done = int(state["step"])
        self.positions = state["positions_nm"].to(self.device, self.dtype).clone()
        self.velocities = state["velocities_nm_per_ps"].to(self.device, self.dtype).clone()
        self.forces = state["forces_kj_per_mol_nm"].to(self.device, self.dtype).clone()
        self.energies = state["energies_kj_per_mol"].to(self.device, self.dtype).clone()
        # Rebuilding the lists here is safe: forces do not depend on when lists were built.
        if self.verlet is not None:
            self.verlet = VerletList(
                self.batch.pairs,
                self.batch.graph_index,
                self.num_replicas,
                self.model.cutoff_nm,
                self.skin_nm,
            )
        self._graphed = None
