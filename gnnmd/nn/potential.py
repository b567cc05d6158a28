"""The gnnmd potential: SchNet network plus physical priors over a packed batch.

E_total(graph) = E_priors(graph) + Σ_{beads i in graph} E_network(i), in kJ/mol,
with positions in nm. Forces are -∂E/∂x by autograd, in kJ/mol/nm. The module
is TorchScript-compatible; the Python-only helpers (packing topologies, config)
are marked unused for scripting.
"""

from __future__ import annotations

import dataclasses
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from gnnmd.config import from_mapping
from gnnmd.graph import GraphBatch, pack
from gnnmd.kernels.filter_spec import ACTIVATIONS
from gnnmd.neighbors import within_cutoff
from gnnmd.nn.basis import RADIAL_BASES
from gnnmd.nn.filter_record import network_record
from gnnmd.nn.priors import PRIOR_TERMS, PriorSet, native_ops_apply
from gnnmd.nn.schnet import SchNet
from gnnmd.topology import CGTopology


@dataclass(frozen=True)
class PotentialConfig:
    """Hyperparameters of a potential (defaults close to CGSchNet).

    Attributes:
        hidden_channels: bead feature width.
        num_filters: continuous-filter width.
        num_interactions: number of interaction blocks.
        num_rbf: number of radial basis functions.
        rbf: "gaussian" or "expnormal".
        cutoff_nm: cutoff of the network and the repulsion prior, nm.
        activation: "tanh" (CGSchNet), "ssp" (SchNet), "silu", "sigmoid" or "mish".
        exclusion_order: pairs within this many bonds are left to the bonded
            priors and seen by neither the network nor the repulsion (2: 1-2 and 1-3).
        use_priors: whether the model has physical priors.
        lower_cutoff_nm: pairs closer than this contribute nothing to the network (TorchMD-Net's
            ``cutoff_lower``), nm.
        rbf_envelope: the radial basis is multiplied by the cosine cutoff (TorchMD-Net's ExpNormal,
            mlcg's Gaussians with a CosineCutoff).
        neighbor_embedding: TorchMD-Net's neighbour embedding before the interaction blocks.
        readout_hidden_layers: extra hidden layers of the readout MLP.
        chiral_features: add reflection-sensitive input to each bead's embedding (signed dihedral
            features of the bonded topology, :mod:`gnnmd.nn.chirality`), so a structure and its
            mirror image can differ in energy; pair filters stay functions of distance.
        readout_widths: the readout MLP's hidden widths (H → w₁ → … → 1, mlcg's
            ``output_hidden_layer_widths``); empty: H/2, then ``readout_hidden_layers`` more of H/2.
        repulsion_exclusions: bonded separations (1: bonds, 2: 1-3, 3: 1-4 pairs) the repulsion
            prior leaves out beyond those ``exclusion_order`` removes from every pair list:
            TorchMD's priors exclude the bonded pairs its force terms list from the repulsion,
            while its networks see every pair. Needs a bonded graph without rings.
        repulsion_residue_exclusion: the repulsion prior also leaves out every pair within one
            residue (mlcg's ``make_non_bonded_set`` with ``residue_exclusion``); the network sees them.
        repulsion_shift: shift the repulsion to zero at the cutoff (False: TorchMD's unshifted form).
        prior_terms: the prior terms that contribute (a subset of ``PRIOR_TERMS``).
        readout_activation: the readout MLP's activation when it differs from ``activation``
            (SchNetPack's default: shifted softplus in the blocks, SiLU in the readout).
        terminal_types: the first and last bead of each molecule take types of their own,
            ``"TYR.CA-terminal"`` (mlcg's ``special_terminal``; :func:`gnnmd.graph.model_bead_types`).
    """

    hidden_channels: int = 128
    num_filters: int = 128
    num_interactions: int = 3
    num_rbf: int = 50
    rbf: str = "gaussian"
    cutoff_nm: float = 2.0
    activation: str = "tanh"
    exclusion_order: int = 2
    use_priors: bool = True
    lower_cutoff_nm: float = 0.0
    rbf_envelope: bool = False
    neighbor_embedding: bool = False
    readout_hidden_layers: int = 0
    repulsion_exclusions: Tuple[int, ...] = ()
    repulsion_residue_exclusion: bool = False
    repulsion_shift: bool = True
    prior_terms: Tuple[str, ...] = PRIOR_TERMS
    readout_activation: Optional[str] = None
    readout_widths: Tuple[int, ...] = ()
    chiral_features: bool = False
    terminal_types: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_channels", "num_filters", "num_rbf"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        if self.num_interactions < 0:
            raise ValueError(f"num_interactions must be >= 0, got {self.num_interactions}")
        if self.rbf not in RADIAL_BASES:
            raise ValueError(f"rbf {self.rbf!r} is not one of {RADIAL_BASES}")
        for name in ("activation", "readout_activation"):
            value = getattr(self, name)
            if value not in ACTIVATIONS and not (name == "readout_activation" and value is None):
                raise ValueError(f"{name} {value!r} is not one of {ACTIVATIONS}")
        if not self.cutoff_nm > 0:
            raise ValueError(f"cutoff_nm must be positive, got {self.cutoff_nm}")
        if self.exclusion_order not in (0, 1, 2, 3):
            raise ValueError(f"exclusion_order must be 0, 1, 2 or 3, got {self.exclusion_order}")
        if not 0.0 <= self.lower_cutoff_nm < self.cutoff_nm:
            raise ValueError(f"lower_cutoff_nm must lie in [0, cutoff_nm), got {self.lower_cutoff_nm}")
        if self.readout_hidden_layers < 0:
            raise ValueError(f"readout_hidden_layers must be >= 0, got {self.readout_hidden_layers}")
        object.__setattr__(self, "readout_widths", tuple(int(width) for width in self.readout_widths))
        if any(width < 1 for width in self.readout_widths):
            raise ValueError(f"readout_widths must be positive, got {list(self.readout_widths)}")
        if self.readout_widths and self.readout_hidden_layers:
            raise ValueError("give readout_widths or readout_hidden_layers, not both")
        terms = tuple(term for term in PRIOR_TERMS if term in set(self.prior_terms))
        unknown = sorted(set(self.prior_terms) - set(PRIOR_TERMS))
        if unknown:
            raise ValueError(f"prior_terms {unknown} are not among {PRIOR_TERMS}")
        object.__setattr__(self, "prior_terms", terms)
        extra = tuple(sorted(set(int(order) for order in self.repulsion_exclusions)))
        object.__setattr__(self, "repulsion_exclusions", extra)
        if any(order <= self.exclusion_order or order > 3 for order in extra):
            raise ValueError(
                f"repulsion_exclusions must lie in {self.exclusion_order + 1}..3 (separations up to "
                f"exclusion_order are in no pair list), got {list(extra)}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PotentialConfig:
        """Build from a mapping; unknown keys raise ValueError."""
        return from_mapping(cls, values, "model config")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["repulsion_exclusions"] = list(self.repulsion_exclusions)
        values["prior_terms"] = list(self.prior_terms)
        values["readout_widths"] = list(self.readout_widths)
        return values


class CGPotential(nn.Module):
    """A SchNet-style CG potential with priors.

    Args:
        config: hyperparameters.
        vocabulary: bead-type names; the embedding row of type t is vocabulary.index(t).
        priors: the prior set (required when ``config.use_priors``).
    """

    def __init__(
        self, config: PotentialConfig, vocabulary: Sequence[str], priors: Optional[PriorSet]
    ) -> None:
        super().__init__()
        if config.use_priors and priors is None:
            raise ValueError("config.use_priors is True but no priors were given")
        self.config = config
        self.vocabulary: List[str] = list(vocabulary)
        self.cutoff_nm = float(config.cutoff_nm)
        self.use_priors = bool(config.use_priors)
        self.network = SchNet(
            num_types=len(self.vocabulary),
            hidden_channels=config.hidden_channels,
            num_filters=config.num_filters,
            num_interactions=config.num_interactions,
            num_rbf=config.num_rbf,
            cutoff_nm=config.cutoff_nm,
            rbf=config.rbf,
            act=config.activation,
            lower_cutoff_nm=config.lower_cutoff_nm,
            rbf_envelope=config.rbf_envelope,
            neighbor_embedding=config.neighbor_embedding,
            readout_hidden_layers=config.readout_hidden_layers,
            readout_act=config.readout_activation,
            readout_widths=config.readout_widths,
            chiral_features=config.chiral_features,
        )
        # TorchScript needs a module here either way; an unused empty set costs nothing.
        self.priors = priors if priors is not None else _empty_priors(len(self.vocabulary), config.cutoff_nm)
        # The config is where these live (it travels in checkpoints); the prior set computes them.
        self.priors.repulsion.shift = bool(config.repulsion_shift)
        self.priors.repulsion_exclusions = list(config.repulsion_exclusions)
        self.priors.residue_exclusion = bool(config.repulsion_residue_exclusion)
        self.priors.terms = list(config.prior_terms)
        #: Pair distances through a registered op on CPU, unfiltered
        #: (:class:`gnnmd.kernels.native_geometry.NativePairDistances`, set by the tabulated backend,
        #: whose kernels and priors leave out pairs beyond the cutoff), or None.
        self.pair_distance_kernel = None

    def forward(self, positions: Tensor, batch: GraphBatch, box: Optional[Tensor] = None) -> Tensor:
        """Per-graph potential energy.

        Args:
            positions: (N, 3) nm.
            batch: packed graphs (see :func:`gnnmd.graph.pack`).
            box: optional (G, 3, 3) nm periodic box vectors per graph.
        Returns:
            (G,) kJ/mol.
        """
        pairs, distances = self.neighbor_distances(positions, batch.pairs, batch.graph_index, box)
        return self.energy_from_pairs(positions, batch, pairs, distances, box)

    def neighbor_distances(
        self, positions: Tensor, candidates: Tensor, graph_index: Tensor, box: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """The pairs of ``candidates`` (2, P) this model needs, and their distances (nm, differentiable).

        The candidates inside the cutoff; on the native tabulated path all of them (its kernels and
        priors give pairs at or beyond the cutoff nothing, and filtering would cost more).
        """
        kernel = self.pair_distance_kernel
        if kernel is not None and native_ops_apply(positions, box):
            return candidates, kernel(positions, candidates, graph_index, box)
        pairs, _, distances = within_cutoff(positions, candidates, graph_index, self.cutoff_nm, box)
        return pairs, distances

    def energy_from_pairs(
        self,
        positions: Tensor,
        batch: GraphBatch,
        pairs: Tensor,
        distances: Tensor,
        box: Optional[Tensor] = None,
    ) -> Tensor:
        """Per-graph potential energy from a neighbour list built by the caller.

        The one code path of the network and the priors: :meth:`forward` calls it
        with the pairs it finds itself; the replica runner calls it with pairs
        from a Verlet list (:mod:`gnnmd.neighbors.verlet`).

        Args:
            positions: (N, 3) nm (the bonded priors read them).
            batch: packed graphs.
            pairs: (2, E) int64 non-bonded pairs i<j, a subset of ``batch.pairs``
                holding every candidate pair inside the cutoff. A pair whose
                distance is exactly ``cutoff_nm`` contributes exactly zero energy and
                force (cosine envelope and shifted repulsion vanish there), which
                lets static-shape callers pad their lists with such pairs.
            distances: (E,) nm, differentiable with respect to ``positions`` for forces.
            box: optional (G, 3, 3) nm periodic box vectors per graph.
        Returns:
            (G,) kJ/mol.
        """
        initial: Optional[Tensor] = None
        chirality = self.network.chirality
        if chirality is not None:
            initial = chirality(positions, batch.dihedrals, batch.graph_index, box)
        bead_energy = self.network(batch.types, pairs, distances, initial)
        num_graphs = batch.ptr.shape[0] - 1
        energy = torch.zeros(num_graphs, dtype=positions.dtype, device=positions.device)
        energy = energy.index_add(0, batch.graph_index, bead_energy) + self.network.molecule_energy
        if self.use_priors:
            energy = energy + self.priors(positions, batch, pairs, distances, box)
        return energy

    @torch.jit.export
    def energy_and_forces(
        self,
        positions: Tensor,
        batch: GraphBatch,
        box: Optional[Tensor] = None,
        create_graph: bool = False,
    ) -> Tuple[Tensor, Tensor]:
        """Energies (G,) kJ/mol and forces (N, 3) kJ/mol/nm = -∂E/∂x.

        ``create_graph=True`` keeps the graph of the forces (force-matching training).
        """
        if not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        energy = self.forward(positions, batch, box)
        gradient = torch.autograd.grad(
            [energy.sum()], [positions], create_graph=create_graph, allow_unused=True
        )[0]
        if gradient is None:
            gradient = torch.zeros_like(positions)
        if not create_graph:
            # Holding the graph through the energies would keep every edge tensor alive.
            energy = energy.detach()
        return energy, -gradient

    @torch.jit.unused
    def pack(self, topologies: Sequence[CGTopology], device: torch.device | str | None = None) -> GraphBatch:
        """Pack topologies for this model; unknown bead types or uncovered prior terms raise BeadTypeError."""
        batch = pack(
            topologies, self.vocabulary, self.config.exclusion_order, device, self.config.terminal_types
        )
        if self.use_priors:
            sources = ", ".join(sorted({t.source for t in topologies}))
            self.priors.check(batch, sources)
        return batch


def _empty_priors(num_types: int, cutoff_nm: float) -> PriorSet:
    empty = torch.zeros(0, dtype=torch.int64)
    scalar = torch.zeros(0)
    tables = {
        "bonds": {"keys": empty, "k": scalar, "r0": scalar},
        "angles": {"keys": empty, "k": scalar, "theta0": scalar},
        "dihedrals": {
            "keys": empty,
            "cos_coefficients": torch.zeros(0, 1),
            "sin_coefficients": torch.zeros(0, 1),
        },
        "repulsion": {"keys": empty, "sigma": scalar, "epsilon": scalar},
    }
    return PriorSet(["none"], torch.zeros(num_types, dtype=torch.int64), tables, cutoff_nm)


def priors_only(model: CGPotential) -> CGPotential:
    """A copy of ``model`` whose network adds nothing (its last readout layer, per-type and
    per-molecule energies zeroed): the model's priors alone, on the same backend."""
    copy = deepcopy(model)
    last = copy.network.readout[-1]
    with torch.no_grad():
        # Every floating tensor of the last layer: a quantized layer keeps its weights as int16 bits.
        for tensor in [*last.parameters(), *last.buffers()]:
            if tensor.is_floating_point():
                tensor.zero_()
        copy.network.type_energy.zero_()
        copy.network.molecule_energy.zero_()
    kernel = copy.network.network_kernel
    if kernel is not None:
        # The whole-network op of the tabulated backend holds its own copy of the readout: rebuild it
        # from the zeroed layers, or it would go on adding the network's energy.
        copy.network.network_kernel = type(kernel)(network_record(copy.network))
    return copy


def seeded_potential(
    config: PotentialConfig, vocabulary: Sequence[str], priors: Optional[PriorSet], seed: int
) -> CGPotential:
    """A CGPotential whose network weights come from ``seed``; the caller's RNG state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CGPotential(config, vocabulary, priors)
