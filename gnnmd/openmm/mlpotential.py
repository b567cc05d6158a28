"""gnnmd as an openmm-ml potential (registered through the ``openmmml.potentials`` entry point).

Usage, with a CG topology (one atom per bead, e.g. the ``cg.pdb`` that
``gnnmd openmm-xml`` writes)::

    from openmm.app import PDBFile    # any import order: openmm-ml imports gnnmd through the
    from openmmml import MLPotential  # entry point, and gnnmd then loads openmm-torch's plugin

    pdb = PDBFile("cg.pdb")
    potential = MLPotential("gnnmd", model="default")          # name, checkpoint or exported file
    system = potential.createSystem(pdb.topology)              # bead masses, one gnnmd force

``MLPotential("gnnmd", ...)`` takes ``model`` (default ``"default"``), ``route``
(``"torch"`` or ``"python"``), ``platform`` and ``precision`` (see
:mod:`gnnmd.openmm.platforms`); ``createSystem`` takes no extra keywords. Any
other keyword is refused with a ValueError naming it.

The classes implement openmm-ml's ``MLPotentialImplFactory.createImpl`` and
``MLPotentialImpl.addForces`` interface without subclassing them: openmm-ml
imports this module while it is itself being imported (entry points are read
at the end of ``openmmml.mlpotential``), so this module must not import
openmmml back.

All-atom models (every type an element, such as ``ala2-allatom``) follow
openmm-ml's contract for atomistic potentials: ``createSystem(topology)`` on an
all-atom topology (element masses kept, every pair inside the cutoff), and
``createMixedSystem(topology, mm_system, ml_atoms)``, where the gnnmd force acts
on the ML atoms only (route ``"torch"``). For CG models ``createMixedSystem`` is
refused: their particles are CG beads (one per mapped backbone atom, no
hydrogens or side chains), which cannot be coupled to an all-atom force field;
``gnnmd.openmm.coarse_grain`` maps an all-atom topology to the CG system instead.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import openmm
import openmm.app
import openmm.unit

from gnnmd.errors import TopologyError
from gnnmd.openmm.forces import check_box, torch_force
from gnnmd.openmm.platforms import DEFAULT_PLATFORM, PlatformSpec, check_torch_plugin, resolve_platform
from gnnmd.openmm.system import DEFAULT_ROUTE, check_route, gnnmd_force, model_cutoff_nm, resolve_model
from gnnmd.openmm.topology import cg_topology_from_openmm, periodic_box_nm
from gnnmd.topology import custom_topology, is_element_model

#: The keywords MLPotential('gnnmd', ...) accepts, with their defaults.
POTENTIAL_OPTIONS = {
    "model": "default",
    "route": DEFAULT_ROUTE,
    "platform": DEFAULT_PLATFORM,
    "precision": None,  # DEFAULT_PRECISION unless a PlatformSpec carries one
}


def _refuse_unknown(where: str, given: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown keyword(s) {unknown}; allowed: {sorted(allowed)}")


class GnnmdPotentialImplFactory:
    """Creates :class:`GnnmdPotentialImpl` for ``MLPotential('gnnmd', ...)``."""

    def createImpl(self, name: str, **args: Any) -> GnnmdPotentialImpl:  # noqa: N802 (openmm-ml's name)
        _refuse_unknown(f"MLPotential({name!r})", args, POTENTIAL_OPTIONS)
        return GnnmdPotentialImpl(name, **{**POTENTIAL_OPTIONS, **args})


class GnnmdPotentialImpl:
    """A gnnmd CG potential for openmm-ml.

    >>> system = MLPotential("gnnmd", model="default").createSystem(PDBFile("cg.pdb").topology)

    The model is loaded (and its bead vocabulary later checked against the
    topology) when the potential is created, so a bad model fails early.
    """

    def __init__(
        self, name: str, model: Any, route: str, platform: str | PlatformSpec, precision: str | None
    ) -> None:
        self.name = name
        self.route = check_route(route)
        self.spec = resolve_platform(platform, precision)
        self.model = resolve_model(model)
        #: An all-atom model: its types are elements, read from the topology's atoms.
        self.element_model = is_element_model(getattr(self.model, "vocabulary", ()))

    def _atomistic_force(
        self, topology: openmm.app.Topology, system: openmm.System, atoms: Optional[Iterable[int]]
    ) -> openmm.Force:
        """The force of an all-atom model on ``atoms`` (all when None); the System's masses stay."""
        everything = list(topology.atoms())
        chosen = list(range(len(everything))) if atoms is None else [int(i) for i in atoms]
        if not chosen:
            raise ValueError("createMixedSystem: the ML subset is empty")
        missing = [everything[i].name for i in chosen if everything[i].element is None]
        if missing:
            raise TopologyError(f"atoms {missing[:5]} have no element (an all-atom gnnmd model reads them)")
        symbols = [everything[i].element.symbol for i in chosen]
        masses = [everything[i].element.mass.value_in_unit(openmm.unit.amu) for i in chosen]
        molecule = custom_topology("openmm-ml atoms", symbols, masses, [], source="openmm-ml topology")
        periodic = self._periodic(topology)
        if atoms is None:
            return gnnmd_force(molecule, self.model, self.route, 1, self.spec, periodic=periodic)
        if self.route != "torch":
            raise ValueError("createMixedSystem runs gnnmd on the 'torch' route only (route='torch')")
        check_torch_plugin(self.spec)
        subset = (chosen, system.getNumParticles())
        return torch_force(self.model, molecule, 1, self.spec.model_dtype, periodic, subset)

    def _periodic(self, topology: openmm.app.Topology) -> bool:
        """Whether the topology is periodic, after checking that its box holds the model's cutoff."""
        box = periodic_box_nm(topology)
        if box is not None:
            check_box(box, model_cutoff_nm(self.model), "MLPotential('gnnmd') topology box")
        return box is not None

    def addForces(  # noqa: N802 (openmm-ml's name)
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Optional[Iterable[int]],
        forceGroup: int,  # noqa: N803 (openmm-ml's name)
        **args: Any,
    ) -> None:
        """Add the gnnmd force (see the module docstring); a CG model also sets the bead masses."""
        _refuse_unknown(f"MLPotential({self.name!r}).createSystem", args, ())
        if self.element_model:
            force = self._atomistic_force(topology, system, atoms)
        else:
            force = self._cg_force(topology, system, atoms)
        force.setForceGroup(forceGroup)
        system.addForce(force)

    def _cg_force(
        self, topology: openmm.app.Topology, system: openmm.System, atoms: Optional[Iterable[int]]
    ) -> openmm.Force:
        """The force of a CG model on a CG topology; every particle gets its bead's mass."""
        if atoms is not None:
            raise NotImplementedError(
                "gnnmd's model is coarse-grained: its particles are CG beads, not atoms of an all-atom "
                "force field, so createMixedSystem cannot couple them; build the whole CG system with "
                "createSystem(cg_topology), from an all-atom topology with "
                "gnnmd.openmm.coarse_grain(topology, positions)"
            )
        cg = cg_topology_from_openmm(topology, name="openmm-ml topology")
        if system.getNumParticles() != cg.n_beads:
            raise TopologyError(
                f"the System has {system.getNumParticles()} particles but the topology {cg.n_beads} beads"
            )
        for index, mass in enumerate(cg.masses_amu):
            system.setParticleMass(index, float(mass))
        return gnnmd_force(cg, self.model, self.route, 1, self.spec, periodic=self._periodic(topology))
