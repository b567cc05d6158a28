"""Model files: one checkpoint format, and shipped models addressed by name.

A checkpoint is one ``torch.save`` file holding a dict:

==================  ==========================================================
key                 content
==================  ==========================================================
format              ``"gnnmd-checkpoint"``
format_version      int, :data:`FORMAT_VERSION` when written
config              :class:`~gnnmd.nn.potential.PotentialConfig` as a dict
vocabulary          list of bead-type names (embedding order)
priors              {"prior_types", "bead_to_prior_type", "tables"} or None
network             the SchNet ``state_dict``
units               {"length": "nm", "energy": "kJ/mol"}
metadata            {"name", "trained", "description", ...}
==================  ==========================================================

It is read with ``weights_only=True``: a checkpoint cannot run code on load.
Everywhere a model is taken, a shipped name (:func:`list_models`) or a path works.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

# Re-exported: the catalog (no torch) owns them; gnnmd.models is where users look for them.
from gnnmd.catalog import DEFAULT_MODEL, PRETRAINED_DIR, list_models  # noqa: F401
from gnnmd.errors import CheckpointError, ModelNotFoundError, UntrainedModelWarning
from gnnmd.nn.potential import CGPotential, PotentialConfig, seeded_potential
from gnnmd.nn.priors import PriorSet
from gnnmd.runfolder import atomic_write_bytes
from gnnmd.safe_load import load_tensors

FORMAT = "gnnmd-checkpoint"
FORMAT_VERSION = 1
UNITS = {"length": "nm", "energy": "kJ/mol"}
REQUIRED_KEYS = ("format", "format_version", "config", "vocabulary", "priors", "network", "units", "metadata")


def model_path(name_or_path: str | os.PathLike) -> Path:
    """The file behind a shipped model name or a path; ModelNotFoundError if neither exists."""
    shipped = PRETRAINED_DIR / f"{name_or_path}.pt"
    if isinstance(name_or_path, str) and os.sep not in name_or_path and shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise ModelNotFoundError(
        f"model {str(name_or_path)!r} is neither a shipped model {list_models()} nor an existing file"
    )


def save_checkpoint(model: CGPotential, path: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write ``model`` to ``path`` (atomically: a crash never leaves half a file).

    ``metadata`` must say whether the network is trained (``trained``: bool).
    """
    if not isinstance(metadata.get("trained"), bool):
        raise ValueError("checkpoint metadata needs 'trained': True or False")
    if model.network.backend != "reference":
        raise ValueError(
            f"this model runs the {model.network.backend!r} kernel backend, a frozen conversion; save the "
            "reference model it came from (gnnmd.nn.backends.use_backend converts it again after loading)"
        )
    priors = None
    if model.use_priors:
        priors = {
            "prior_types": list(model.priors.prior_types),
            "bead_to_prior_type": model.priors.bead_to_prior_type.cpu(),
            "tables": {
                term: {name: value.cpu() for name, value in table.items()}
                for term, table in model.priors.tables().items()
            },
        }
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "vocabulary": list(model.vocabulary),
        "priors": priors,
        "network": {k: v.cpu() for k, v in model.network.state_dict().items()},
        "units": dict(UNITS),
        "metadata": dict(metadata),
    }
    path = Path(path)
    atomic_write_bytes(path, lambda file: torch.save(checkpoint, file))
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict at ``path``, validated; CheckpointError names what is wrong."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/code/__torch__.py") or "/code/" in name for name in archive.namelist()):
                raise CheckpointError(
                    f"{path}: this is an exported TorchScript module (from `gnnmd export`), not a "
                    "gnnmd checkpoint; load it with torch.jit.load or openmmtorch.TorchForce"
                )
    checkpoint = load_tensors(path, "gnnmd checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: field 'format' is {found!r}, expected {FORMAT!r}")
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: field 'format_version' is {version!r}, expected a positive int")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} was written by a newer gnnmd; "
            f"this gnnmd reads versions up to {FORMAT_VERSION}. Upgrade gnnmd."
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}")
    if checkpoint["units"] != UNITS:
        raise CheckpointError(f"{path}: field 'units' is {checkpoint['units']!r}, expected {UNITS!r}")
    return checkpoint


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    backend: str = "reference",
    allow_fallback: bool = False,
    dtype: torch.dtype = torch.float32,
) -> CGPotential:
    """Load a shipped model by name or a checkpoint by path (CPU, eval mode).

    ``dtype`` is the model's floating-point type; float64 reads weights stored in
    float64 (imported models keep their source's) without rounding them to float32.

    ``backend`` picks the kernel backend (see :mod:`gnnmd.kernels`); anything but
    ``reference`` gives a frozen model for simulation. A backend whose fast kernel
    cannot run here raises, unless ``allow_fallback`` (then its pure-torch twin runs,
    recorded in ``model.network.fallback``).
    """
    path = model_path(name_or_path)
    checkpoint = read_checkpoint(path)
    try:
        config = PotentialConfig.from_dict(checkpoint["config"])
        priors = None
        if checkpoint["priors"] is not None:
            spec = checkpoint["priors"]
            priors = PriorSet(
                spec["prior_types"], spec["bead_to_prior_type"], spec["tables"], config.cutoff_nm
            )
        model = CGPotential(config, checkpoint["vocabulary"], priors).to(dtype)
        model.network.load_state_dict(checkpoint["network"])
        if priors is not None:
            model.priors.set_values(checkpoint["priors"]["tables"])
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"{path}: inconsistent checkpoint contents ({error})") from error
    _require_finite(path, model)
    model.metadata = dict(checkpoint["metadata"])
    model.source = str(path)
    model.eval()
    _warn_if_untrained(model, path)
    if backend == "reference":
        return model
    from gnnmd.nn.backends import use_backend

    converted = use_backend(model, backend, allow_fallback=allow_fallback)
    converted.metadata, converted.source = model.metadata, model.source
    return converted


_UNTRAINED_WARNED: set[str] = set()


def _warn_if_untrained(model: CGPotential, path: Path) -> None:
    """Warn once per model file (per process) that an untrained model is in use."""
    if is_trained(model) or str(path.resolve()) in _UNTRAINED_WARNED:
        return
    _UNTRAINED_WARNED.add(str(path.resolve()))
    name = model.metadata.get("name", path.stem)
    warnings.warn(
        f"model {name!r} ({path}) is UNTRAINED: priors and a seeded random network; it runs and times "
        "correctly but its energies are not physical (`gnnmd models` lists the trained ones)",
        UntrainedModelWarning,
        stacklevel=3,
    )


def _require_finite(path: Path, model: CGPotential) -> None:
    """A model with NaN or infinite weights would fail as a "blow-up" later; name the tensor now."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds non-finite values; the model file is damaged "
                "(or came from a training run that diverged)"
            )


def is_trained(model: CGPotential) -> bool:
    """Whether the model's network was trained (False for seeded, untrained networks)."""
    return bool(getattr(model, "metadata", {}).get("trained", False))


#: The laptop-sized configuration of the shipped ``default`` model: ``make run``
#: (64 chignolin replicas on 2 CPU cores) finishes in a few minutes.
DEFAULT_CONFIG = PotentialConfig(
    hidden_channels=64, num_filters=64, num_interactions=2, num_rbf=32, rbf="gaussian",
    cutoff_nm=1.2, activation="tanh", exclusion_order=2,
)  # fmt: skip

#: mlcg's example CGSchNet, the configuration FlashSchNet accelerates and the
#: fused-kernels benchmark uses: 128 features, 128 filters, 5 blocks, 128
#: Gaussians, 2 nm (20 Å) cosine cutoff, tanh.
BENCHMARK_CONFIG = PotentialConfig(
    hidden_channels=128, num_filters=128, num_interactions=5, num_rbf=128, rbf="gaussian",
    cutoff_nm=2.0, activation="tanh", exclusion_order=2,
)  # fmt: skip


def untrained_model(
    config: PotentialConfig,
    structures: list[tuple[Any, Any]],
    seed: int,
    mapping: str = "5bead",
    temperature_k: float = 300.0,
) -> CGPotential:
    """A model with priors set from native structures and a seeded, untrained network.

    Prior types are the bead names of ``mapping`` (N, CA, CB, C, O), so the
    priors cover any protein of that mapping. The network's last layer is
    scaled down so that its random forces stay small next to the priors'.

    Args:
        config: hyperparameters.
        structures: (CGTopology, positions (n, 3) nm) native structures to set priors from.
        seed: seeds the network's initial weights.
        mapping: "5bead" or "ca".
        temperature_k: K, sets the priors' force constants (see gnnmd.nn.priors.fit).
    """
    from gnnmd.nn.priors.fit import fit_native_priors
    from gnnmd.protein_mapping import BEAD_NAMES, protein_bead_vocabulary

    vocabulary = protein_bead_vocabulary(mapping)
    prior_types = list(BEAD_NAMES[mapping])
    bead_to_prior = torch.tensor([prior_types.index(t.split(".")[1]) for t in vocabulary])
    tables = fit_native_priors(
        structures, vocabulary, bead_to_prior.numpy(), len(prior_types),
        config.exclusion_order, config.cutoff_nm, temperature_k,
    )  # fmt: skip
    priors = PriorSet(prior_types, bead_to_prior, tables, config.cutoff_nm)
    model = seeded_potential(config, vocabulary, priors, seed)
    with torch.no_grad():
        model.network.readout[-1].weight.mul_(UNTRAINED_READOUT_SCALE)
        model.network.readout[-1].bias.zero_()
    return model.eval()


#: Factor on the untrained network's last layer: keeps random forces to a few
#: kJ/mol/nm so that dynamics with the untrained default model stay stable.
UNTRAINED_READOUT_SCALE = 0.1


def vocabulary_mapping(vocabulary: list[str]) -> str | None:
    """The CG mapping a model's bead types imply: ``"ca"`` when every type is a residue's CA bead
    (``"TYR.CA"``, e.g. an imported TorchMD CG model), else None (a system's own mapping)."""
    return "ca" if vocabulary and all(name.endswith(".CA") for name in vocabulary) else None
