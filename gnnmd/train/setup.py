"""A fresh model for a dataset: its bead types, priors by Boltzmann inversion, a seeded network."""

from __future__ import annotations

import numpy as np
import torch

from gnnmd.data.dataset import ForceDataset, spread_indices
from gnnmd.nn.potential import CGPotential, PotentialConfig, seeded_potential
from gnnmd.nn.priors import PriorSet
from gnnmd.nn.priors.fit import fit_boltzmann_priors

#: Frames per molecule used for the prior histograms (spread evenly over the data).
PRIOR_FRAMES = 5000
#: Frames per molecule the refinement of the dihedral priors compares its simulations with.
REFINE_FRAMES = 20000


def prior_structures(dataset: ForceDataset, frames: int) -> list[tuple]:
    """(topology, (F, n, 3) nm) per molecule: up to ``frames`` frames spread evenly over its data,
    frames of biased trajectories left out (the priors are Boltzmann inversions of histograms)."""
    structures = []
    for molecule, topology in enumerate(dataset.topologies):
        boltzmann = np.flatnonzero(~dataset.biased_frames(molecule))
        chosen = boltzmann[np.unique(spread_indices(len(boltzmann), min(len(boltzmann), frames)))]
        structures.append((topology, dataset.frames(molecule, chosen)[0]))
    return structures


def model_for_dataset(
    dataset: ForceDataset,
    config: PotentialConfig,
    temperature_k: float,
    seed: int,
    prior_frames: int = PRIOR_FRAMES,
) -> CGPotential:
    """A model whose vocabulary is the dataset's bead types and whose priors are fitted to its frames.

    Prior types are the bead types themselves. With ``config.use_priors`` False
    (all-atom models: element types, no bonds) no priors are fitted and the
    network alone is the potential. The network is freshly initialised from
    ``seed`` (global torch RNG state is left as it was).

    Args:
        dataset: reference frames (nm), sampled at ``temperature_k``.
        config: network hyperparameters.
        temperature_k: K, the temperature of the reference data (used by the prior fit).
        seed: seeds the network's initial weights.
        prior_frames: frames per molecule for the Boltzmann inversion.
    """
    vocabulary = sorted({t for topology in dataset.topologies for t in topology.bead_types})
    if not config.use_priors:
        return seeded_potential(config, vocabulary, None, seed)
    structures = prior_structures(dataset, prior_frames)
    identity = np.arange(len(vocabulary))
    tables = fit_boltzmann_priors(
        structures, vocabulary, identity, vocabulary, config.exclusion_order, config.cutoff_nm, temperature_k
    )
    priors = PriorSet(vocabulary, torch.as_tensor(identity), tables, config.cutoff_nm)
    return seeded_potential(config, vocabulary, priors, seed)
