"""The gnnmd error hierarchy.

Every error a user can trigger with bad input derives from :class:`GnnmdError`
and also from the built-in type that fits (``ValueError``, ``FileNotFoundError``,
``RuntimeError``), so ``except ValueError`` keeps working for callers who do not
know gnnmd. Messages name the file, the field and the offending value.
"""

from __future__ import annotations


class GnnmdError(Exception):
    """Base class of all gnnmd errors."""


class TopologyError(GnnmdError, ValueError):
    """A structure cannot be mapped to coarse-grained beads (unknown residue, missing atom...)."""


class TrajectoryError(GnnmdError, ValueError):
    """A trajectory cannot be read, does not fit its topology, or holds non-finite positions or forces."""


class ForceFieldError(GnnmdError, ValueError):
    """A force field cannot parametrize a topology, or a System file does not fit it."""


class SystemNotFoundError(GnnmdError, LookupError):
    """A system name is neither a shipped system nor a readable PDB path."""


class CheckpointError(GnnmdError, ValueError):
    """A model file is missing, malformed, truncated or from a newer format version."""


class ModelNotFoundError(GnnmdError, LookupError):
    """A model name is neither a shipped model nor an existing file."""


class BeadTypeError(GnnmdError, ValueError):
    """A bead type is not in the model's type vocabulary, or a bonded term has no prior."""


class CommitteeError(GnnmdError, ValueError):
    """Models cannot form a committee.

    Fewer than two members, different bead-type vocabularies or exclusion orders
    (one packed batch must serve them all), or a topology one member cannot pack.
    """


class TrainingError(GnnmdError, RuntimeError):
    """Training cannot go on: the loss is not finite, or a step it needs cannot run here."""


class SimulationError(GnnmdError, RuntimeError):
    """A simulation produced non-finite energies or positions."""


class OpenMMSetupError(GnnmdError, RuntimeError):
    """OpenMM cannot run the request: a platform, the openmm-torch plugin or a needed package is missing."""


class AtomsError(GnnmdError, ValueError):
    """An ASE ``Atoms`` object cannot be evaluated by a model.

    Non-finite positions or cell, missing bead types or bonds on a CG structure,
    a cell periodic in only some directions, or one too narrow for the model's
    cutoff (see :mod:`gnnmd.ase`).
    """


class NeighborCapacityError(GnnmdError, RuntimeError):
    """A static-shape pack has more neighbour pairs inside the cutoff than its capacity holds."""


class IPUUnavailableError(GnnmdError, RuntimeError):
    """The IPU path cannot run here: PopTorch (Graphcore's Poplar SDK) is missing."""


class ImportModelError(GnnmdError, ValueError):
    """A model from another library cannot be imported as the same model (names the option and value)."""


class UntrainedModelWarning(UserWarning):
    """A model whose network was never trained is loaded: its energies are not physical."""
