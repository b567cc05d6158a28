"""Shared fixtures: shipped systems and small float64 models whose every term matters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnmd.models import untrained_model
from gnnmd.nn.potential import PotentialConfig
from gnnmd.systems import load_system


def load_script(path: Path):
    """A script or example file (not a package module) imported as a module, to call its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL_CONFIG = PotentialConfig(
    hidden_channels=16, num_filters=16, num_interactions=2, num_rbf=12, cutoff_nm=1.0, activation="tanh"
)


@pytest.fixture(scope="session")
def chignolin():
    return load_system("chignolin")


@pytest.fixture(scope="session")
def villin():
    return load_system("villin")


def randomized(model):
    """Give every prior coefficient and the network's readout a non-trivial random value.

    Untrained shipped models keep the network small and use only the first
    dihedral harmonic; tests need every term to contribute visibly.
    """
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        model.network.readout[-1].weight.normal_(0.0, 1.0, generator=generator)
        for name in ("cos_coefficients", "sin_coefficients"):
            table = getattr(model.priors.dihedrals, name)
            table.copy_(torch.randn(table.shape, generator=generator, dtype=table.dtype))
    return model


@pytest.fixture()
def small_model(chignolin, villin):
    """A float64 model with priors covering chignolin and villin."""
    structures = [(chignolin.topology, chignolin.positions_nm), (villin.topology, villin.positions_nm)]
    return randomized(untrained_model(SMALL_CONFIG, structures, seed=3)).double()


def perturbed(positions: np.ndarray, scale_nm: float = 0.02, seed: int = 0) -> torch.Tensor:
    """Positions (n, 3) nm with Gaussian noise, as float64."""
    noise = np.random.default_rng(seed).normal(0.0, scale_nm, positions.shape)
    return torch.tensor(positions + noise, dtype=torch.float64)


@pytest.fixture()
def one_thread():
    """Run a test on one intra-op thread, restoring the count afterwards.

    Multi-threaded CPU scatter-adds (the backward of index gathers) accumulate in
    a varying order, so forces differ in their last bits from call to call; on
    one thread every kernel is deterministic and bit-for-bit comparisons hold.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
