"""Build an OpenMM ``System`` for a CG protein and a gnnmd model.

One particle per bead with the bead's mass (amu, never 0); R replicas are R
non-interacting copies back to back (bead i of replica r is particle
``r * n_beads + i``), evaluated by one force call in which the model sees R
graphs. The force is a TorchForce (route ``"torch"``) or a PythonForce (route
``"python"``), see :mod:`gnnmd.openmm.forces`.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import openmm
import openmm.unit
import torch

from gnnmd.kernels import AUTO, choose_backend
from gnnmd.models import load_model
from gnnmd.nn.potential import CGPotential
from gnnmd.openmm.forces import check_box, is_exported_file, python_force, torch_force, torch_force_from_file
from gnnmd.openmm.platforms import PlatformSpec, check_torch_plugin, resolve_platform
from gnnmd.topology import CGTopology

#: The force routes (see gnnmd.openmm.forces).
ROUTES = ("torch", "python")
DEFAULT_ROUTE = "torch"

ModelLike = Union[CGPotential, str, os.PathLike]


def resolve_model(
    model: ModelLike,
    backend: str = "reference",
    allow_fallback: bool = False,
    device: str = "cpu",
    torchscript: bool = True,
) -> CGPotential | str:
    """A CGPotential from a model, a shipped name or a checkpoint path (on ``backend``); an exported
    file's path as a str (its backend was fixed at export; asking for another is an error).

    ``backend="auto"`` leaves a given model or exported file as it is, and loads a name or path on
    the fastest accurate backend that runs on ``device`` (in a TorchScript module where
    ``torchscript``: OpenMM's TorchForce; see :func:`gnnmd.kernels.choose_backend`).
    """
    if backend == AUTO:
        given = isinstance(model, CGPotential) or (
            isinstance(model, (str, os.PathLike)) and is_exported_file(model)
        )
        # "reference" below means "as given" for a model or an exported file.
        backend = "reference" if given else choose_backend(AUTO, device, torchscript=torchscript)
    if isinstance(model, CGPotential):
        if backend != "reference" and model.network.backend != backend:
            raise ValueError(f"the model runs the {model.network.backend!r} backend, not {backend!r}")
        return model
    if isinstance(model, (str, os.PathLike)) and is_exported_file(model):
        if backend != "reference":
            raise ValueError(
                f"{model} is an exported file: its backend was chosen by `gnnmd export --backend`"
            )
        return os.fspath(model)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a CGPotential, a shipped model name or a file path, got {type(model)}"
        )
    return load_model(model, backend=backend, allow_fallback=allow_fallback)


def check_route(route: str) -> str:
    """Validate a route name; ValueError lists the allowed ones."""
    if route not in ROUTES:
        raise ValueError(f"unknown force route {route!r}; allowed: {list(ROUTES)}")
    return route


def add_particles(system: openmm.System, topology: CGTopology, replicas: int) -> None:
    """Append ``replicas`` × ``topology.n_beads`` particles with the bead masses (amu)."""
    for mass in np.tile(topology.masses_amu, replicas):
        system.addParticle(float(mass) * openmm.unit.amu)


def gnnmd_force(
    topology: CGTopology,
    model: ModelLike,
    route: str = DEFAULT_ROUTE,
    replicas: int = 1,
    platform: PlatformSpec | str = "auto",
    periodic: bool = False,
) -> openmm.Force:
    """The force of ``model`` on ``replicas`` copies of ``topology`` by ``route``, for ``platform``.

    ``model`` may also be the path of a file from ``gnnmd export`` (torch route
    only); its bead types and replica count are checked against the request.
    """
    spec = resolve_platform(platform)
    check_route(route)
    resolved = resolve_model(model)
    if not isinstance(resolved, CGPotential):
        if route != "torch":
            raise ValueError(
                f"{resolved}: an exported TorchScript file runs on the 'torch' route only; "
                "give the model checkpoint (or shipped name) for route='python'"
            )
        check_torch_plugin(spec)
        return torch_force_from_file(resolved, topology, replicas, periodic)
    if route == "torch":
        check_torch_plugin(spec)
        return torch_force(resolved, topology, replicas, spec.model_dtype, periodic)
    return python_force(resolved, topology, replicas, spec.model_dtype, spec.torch_device, periodic)


def create_system(
    topology: CGTopology,
    model: ModelLike,
    *,
    route: str = DEFAULT_ROUTE,
    replicas: int = 1,
    box_nm: np.ndarray | None = None,
    platform: PlatformSpec | str = "auto",
    remove_cm_motion: bool = False,
) -> openmm.System:
    """An OpenMM System of ``replicas`` copies of ``topology`` whose potential is ``model``.

    Args:
        topology: the CG topology (one particle per bead; masses in amu).
        model: a CGPotential, a shipped model name, a checkpoint path, or (torch
            route) a file from ``gnnmd export``.
        route: ``"torch"`` (TorchForce, portable, XML-serializable) or ``"python"``
            (PythonForce evaluating the model in this process).
        replicas: non-interacting copies, all evaluated in one model call.
        box_nm: optional (3, 3) periodic box vectors in nm (rows, OpenMM's reduced
            form); the model then uses minimum-image distances. Its narrowest
            width must be at least twice the model's cutoff.
        platform: platform name (see :data:`gnnmd.openmm.platforms.PLATFORMS`) or a
            PlatformSpec; it fixes the model's dtype and device. Create the
            Context on the same platform.
        remove_cm_motion: add a CMMotionRemover (off: Langevin dynamics needs none).

    Raises:
        BeadTypeError: the model's bead vocabulary or priors do not cover the topology
            (the message names the model file and the first unknown bead type).
        OpenMMSetupError: the platform or the openmm-torch plugin is missing.
        ValueError: unknown route, bad replica count or a box too small for the cutoff.
    """
    spec = resolve_platform(platform)
    resolved = resolve_model(model)
    box = None
    if box_nm is not None:
        box = check_box(box_nm, model_cutoff_nm(resolved), f"system {topology.name!r}")
    force = gnnmd_force(topology, resolved, route, replicas, spec, periodic=box is not None)
    system = openmm.System()
    add_particles(system, topology, replicas)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(
            *(openmm.Vec3(*map(float, row)) * openmm.unit.nanometer for row in box)
        )
    system.addForce(force)
    if remove_cm_motion:
        system.addForce(openmm.CMMotionRemover())
    return system


def model_cutoff_nm(model: CGPotential | str) -> float:
    """The cutoff (nm) of a model, or of the module in an exported file (a resolved model)."""
    if isinstance(model, CGPotential):
        return float(model.cutoff_nm)
    return float(torch.jit.load(os.fspath(model), map_location="cpu").cutoff_nm)
