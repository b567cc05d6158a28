"""Frame batches for training: read frames grouped by molecule and pack them once per composition.

Random frames scattered over an HDF5 file cost a read each (about 0.5 ms for a
small molecule, more than the model's step), so a molecule whose frames fit the
loader's memory budget is read whole once and indexed in memory after that.
:class:`ForceModel` is what evaluates a batch (the module DistributedDataParallel wraps).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gnnmd.data.dataset import ForceDataset
from gnnmd.graph import GraphBatch
from gnnmd.nn.potential import CGPotential
from gnnmd.torsions import TorsionBatch, pack_torsions


class ForceBatch(NamedTuple):
    """Packed frames: positions (N, 3) nm, reference forces (N, 3) kJ/mol/nm, the graph batch,
    each graph's dataset molecule index (G,), reference energies (G,) kJ/mol when the
    loader reads them (else None), and the molecules' torsions (:mod:`gnnmd.torsions`)."""

    positions: Tensor
    forces: Tensor
    graphs: GraphBatch
    molecules: Tensor
    energies: Optional[Tensor] = None
    torsions: Optional[TorsionBatch] = None


class BatchLoader:
    """Turns lists of global frame indices into :class:`ForceBatch` es.

    Frames of one molecule are read in one HDF5 call; the packed graph and torsions
    of a batch composition (molecule, count) are built once and reused. With
    ``energies`` the batches also carry the frames' reference energies.
    Molecules are held in memory, first come first served, up to ``memory_bytes``
    in all; the rest are read from the file per batch.
    """

    def __init__(
        self,
        dataset: ForceDataset,
        model: CGPotential,
        device: torch.device,
        cache_size: int = 32,
        energies: bool = False,
        memory_bytes: int = 2 << 30,
    ) -> None:
        self.dataset = dataset
        self.read_energies = energies
        self.model = model
        self.device = device
        self.cache: OrderedDict[tuple, tuple[GraphBatch, TorsionBatch]] = OrderedDict()
        self.molecule_torsions: dict = {}  # each molecule's torsions, searched once
        self.cache_size = cache_size
        self.memory_left = memory_bytes
        self.in_memory: dict[int, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = {}

    def __call__(self, indices: Sequence[int], dtype: torch.dtype) -> ForceBatch:
        by_molecule: dict[int, list[int]] = {}
        for index in indices:
            molecule, frame = self.dataset.locate(int(index))
            by_molecule.setdefault(molecule, []).append(frame)
        positions, forces, energies, composition = [], [], [], []
        for molecule in sorted(by_molecule):
            coordinates, reference, frame_energies = self.read(molecule, by_molecule[molecule])
            positions.append(coordinates.reshape(-1, 3))
            forces.append(reference.reshape(-1, 3))
            if frame_energies is not None:
                energies.append(frame_energies)
            composition.append((molecule, len(by_molecule[molecule])))
        graphs, torsions = self.packed(tuple(composition))
        return ForceBatch(
            positions=torch.as_tensor(np.concatenate(positions), dtype=dtype, device=self.device),
            forces=torch.as_tensor(np.concatenate(forces), dtype=dtype, device=self.device),
            graphs=graphs,
            molecules=torch.tensor(
                [m for m, count in composition for _ in range(count)], dtype=torch.int64, device=self.device
            ),
            energies=(
                torch.as_tensor(np.concatenate(energies), dtype=dtype, device=self.device)
                if self.read_energies
                else None
            ),
            torsions=torsions,
        )

    def read(self, molecule: int, frames: list[int]) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Coordinates, forces (F, n, 3) and energies (F,) or None of ``frames``, in sorted order."""
        if molecule not in self.in_memory and self._fits(molecule):
            whole = self.dataset.frames(molecule)
            stored = self.dataset.energies(molecule) if self.read_energies else None
            self.in_memory[molecule] = (*whole, stored)
        if molecule in self.in_memory:
            order = np.sort(np.asarray(frames, dtype=np.int64))
            coordinates, forces, stored = self.in_memory[molecule]
            return coordinates[order], forces[order], None if stored is None else stored[order]
        # Both reads sort the frame indices, so energies stay in step with the frames.
        coordinates, forces = self.dataset.frames(molecule, frames)
        stored = self.dataset.energies(molecule, frames) if self.read_energies else None
        return coordinates, forces, stored

    def _fits(self, molecule: int) -> bool:
        """Whether the molecule's frames fit the memory budget left (and if so, take their share)."""
        count = int(self.dataset.offsets[molecule + 1] - self.dataset.offsets[molecule])
        size = count * (2 * self.dataset.topologies[molecule].n_beads * 3 * 4 + 8)
        if size > self.memory_left:
            return False
        self.memory_left -= size
        return True

    def packed(self, composition: tuple) -> tuple[GraphBatch, TorsionBatch]:
        """The graph batch and torsions of ``composition`` ((molecule, frames), ...)."""
        if composition not in self.cache:
            topologies = [self.dataset.topologies[m] for m, count in composition for _ in range(count)]
            self.cache[composition] = (
                self.model.pack(topologies, self.device),
                pack_torsions(topologies, self.device, self.molecule_torsions),
            )
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        self.cache.move_to_end(composition)
        return self.cache[composition]


class ForceModel(nn.Module):
    """Energies and forces as the module output, so DistributedDataParallel sees one forward and backward."""

    def __init__(self, potential: CGPotential) -> None:
        super().__init__()
        self.potential = potential

    def forward(self, positions: Tensor, graphs: GraphBatch) -> tuple[Tensor, Tensor]:
        """(N, 3) nm -> energies (G,) kJ/mol and forces (N, 3) kJ/mol/nm, differentiable in the parameters."""
        return self.potential.energy_and_forces(positions, graphs, create_graph=self.training)
