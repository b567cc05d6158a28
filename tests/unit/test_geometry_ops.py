"""The registered geometry and prior ops (``gnnmd::pair_distances``, ``gnnmd::bonded_priors``,
``gnnmd::pair_repulsion``): opcheck, float64 gradcheck, first derivatives only, equal to their pure-torch
twins (``gnnmd.neighbors.dense`` and ``gnnmd.nn.priors``) on real proteins with and without a periodic
box, bad input named, and used by the tabulated backend in the runner and in TorchScript.

Tolerances against the twins: float64 1e-12 relative to the largest value; float32 1e-5.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

from gnnmd.kernels import ops
from gnnmd.kernels.native_geometry import NativePriorTerms
from gnnmd.neighbors.dense import displacements
from gnnmd.nn.backends import use_backend
from gnnmd.nn.priors.bonded import HarmonicCosineAngles
from gnnmd.sim import ReplicaRunner
from tests.conftest import perturbed

ops.load()


def cosine_angles(model):
    """A copy of ``model`` whose angle prior is harmonic in cos θ (mlcg's form), same rest angles."""
    model = copy.deepcopy(model)
    angles = model.priors.angles
    table = {"k": angles.k.clone(), "cos_theta0": torch.cos(angles.theta0)}
    model.priors.angles = HarmonicCosineAngles(angles.num_prior_types, angles.keys, table).to(angles.k.dtype)
    return model


def native_and_twin(model):
    """The model's priors computed by the ops, and by the torch twin (same tables)."""
    native = copy.deepcopy(model.priors)
    native.kernel = NativePriorTerms()
    return native, model.priors


@pytest.fixture(scope="module")
def proteins(request):
    """Chignolin and villin packed as three graphs, perturbed positions (nm), float64."""
    chignolin, villin = request.getfixturevalue("chignolin"), request.getfixturevalue("villin")
    topologies = [chignolin.topology, villin.topology, chignolin.topology]
    positions = torch.cat([
        perturbed(chignolin.positions_nm, seed=1), perturbed(villin.positions_nm, seed=2) + 3.0,
        perturbed(chignolin.positions_nm, seed=3),
    ])  # fmt: skip
    return topologies, positions


def pair_distances_twin(positions, pairs, graph_index, box):
    return torch.linalg.vector_norm(displacements(positions, pairs, graph_index, box), dim=1)


def triclinic_boxes(graphs: int, dtype) -> torch.Tensor:
    """(G, 3, 3) reduced triclinic boxes (rows a, b, c), wider than twice every cutoff used here."""
    box = torch.tensor([[6.0, 0.0, 0.0], [1.5, 5.5, 0.0], [-1.0, 2.0, 5.0]], dtype=dtype)
    return box.expand(graphs, 3, 3).clone()


def wrapped(positions, graph_index, box, seed: int = 0):
    """Positions with random beads moved by whole box vectors: the same system under minimum image."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randint(-1, 2, (positions.shape[0], 3), generator=generator).to(positions.dtype)
    return positions + torch.einsum("nk,nkd->nd", shifts, box[graph_index])


@pytest.mark.parametrize("with_box", [False, True])
@pytest.mark.parametrize("angle_form", ["theta", "cosine"])
def test_priors_equal_the_twin_forward_and_backward(small_model, proteins, with_box, angle_form):
    model = cosine_angles(small_model) if angle_form == "cosine" else small_model
    topologies, positions = proteins
    batch = model.pack(topologies)
    box = triclinic_boxes(3, torch.float64) if with_box else None
    if box is not None:
        positions = wrapped(positions, batch.graph_index, box)
    assert_priors_equal(*native_and_twin(model), positions, batch, model.cutoff_nm, box)


def assert_priors_equal(native, twin, positions, batch, cutoff_nm, box=None):
    """Energies and position gradients of the native priors (fed by the distance op, pairs unfiltered,
    as the runner feeds them) equal the twin's (torch distances, pairs inside the cutoff): 1e-12
    relative to the largest value."""
    results = []
    for priors, distance in ((twin, pair_distances_twin), (native, torch.ops.gnnmd.pair_distances)):
        x = positions.clone().requires_grad_(True)
        distances = distance(x, batch.pairs, batch.graph_index, box)
        inside = distances.detach() < cutoff_nm
        pairs = batch.pairs[:, inside] if priors is twin else batch.pairs  # the ops take unfiltered lists
        distances = distances[inside] if priors is twin else distances
        energy = priors(x, batch, pairs, distances, box)
        results.append((energy.detach(), torch.autograd.grad(energy.sum(), x)[0]))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))


def test_minimum_image_gives_the_unwrapped_energy(small_model, proteins):
    topologies, positions = proteins
    batch = small_model.pack(topologies)
    box = triclinic_boxes(3, torch.float64)
    native, _ = native_and_twin(small_model)

    def energy(x, box):
        distances = torch.ops.gnnmd.pair_distances(x, batch.pairs, batch.graph_index, box)
        return native(x, batch, batch.pairs, distances, box)

    wrapped_energy = energy(wrapped(positions, batch.graph_index, box), box)
    torch.testing.assert_close(wrapped_energy, energy(positions, None))


@pytest.mark.parametrize("terms", [("bonds",), ("angles", "repulsion"), ("dihedrals",), ()])
def test_prior_term_subsets_and_unshifted_repulsion(small_model, proteins, terms):
    topologies, positions = proteins
    batch = small_model.pack(topologies)
    native, twin = native_and_twin(small_model)
    for priors in (native, twin):
        priors.terms = list(terms)
        priors.repulsion.shift = False
    distances = pair_distances_twin(positions, batch.pairs, batch.graph_index, None)
    inside = distances < small_model.cutoff_nm
    expected = twin(positions, batch, batch.pairs[:, inside], distances[inside])
    got = native(positions, batch, batch.pairs, distances)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def prior_arguments(model, topologies, positions, dtype):
    """The arguments of both prior ops for ``topologies`` at ``positions``, in ``dtype``."""
    priors = model.priors.to(dtype)
    batch = model.pack(topologies)
    types = priors.bead_to_prior_type[batch.types]
    count = len(priors.prior_types)
    x = positions.to(dtype)
    dihedrals = priors.dihedrals
    bonded = (x, batch.graph_index, None, len(topologies), types, count, batch.bonds, priors.bonds.keys,
              priors.bonds.k, priors.bonds.r0, batch.angles, priors.angles.keys, priors.angles.k,
              priors.angles.theta0, False, batch.dihedrals, dihedrals.keys, dihedrals.cos_coefficients,
              dihedrals.sin_coefficients, dihedrals.constant)  # fmt: skip
    distances = pair_distances_twin(x, batch.pairs, batch.graph_index, None)
    table = priors.repulsion
    repulsion = (distances, batch.pairs, batch.graph_index, len(topologies), types, count, table.keys,
                 table.sigma, table.epsilon, model.cutoff_nm, True)  # fmt: skip
    return batch, bonded, repulsion


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", ["proteins", "empty"])
def test_opcheck(small_model, chignolin, dtype, size):
    model = copy.deepcopy(small_model)
    topologies = [chignolin.topology]
    positions = perturbed(chignolin.positions_nm)
    batch, bonded, repulsion = prior_arguments(model, topologies, positions, dtype)
    if size == "empty":  # no terms and no pairs: zero energies, zero gradients
        bonded = tuple(a[:0] if i in (6, 10, 15) else a for i, a in enumerate(bonded))
        repulsion = (repulsion[0][:0], repulsion[1][:, :0], *repulsion[2:])
    x = bonded[0]
    for box in (None, triclinic_boxes(1, dtype)):
        pairs = repulsion[1]
        torch.library.opcheck(torch.ops.gnnmd.pair_distances.default, (x, pairs, batch.graph_index, box))
        grad = torch.randn(repulsion[1].shape[1], dtype=dtype)
        torch.library.opcheck(
            torch.ops.gnnmd.pair_distances_backward.default,
            (grad, x, repulsion[1], batch.graph_index, box, repulsion[0]),
        )
        with_box = (*bonded[:2], box, *bonded[3:])
        torch.library.opcheck(torch.ops.gnnmd.bonded_priors.default, with_box)
        torch.library.opcheck(torch.ops.gnnmd.bonded_priors_forward.default, with_box)
    torch.library.opcheck(torch.ops.gnnmd.pair_repulsion.default, repulsion)
    torch.library.opcheck(torch.ops.gnnmd.pair_repulsion_forward.default, repulsion)


def test_gradcheck_and_no_second_derivatives(small_model, chignolin):
    topologies = [chignolin.topology]
    batch, bonded, repulsion = prior_arguments(small_model, topologies, perturbed(chignolin.positions_nm),
                                               torch.float64)  # fmt: skip
    box = triclinic_boxes(1, torch.float64)

    def distances(x):
        return torch.ops.gnnmd.pair_distances(x, batch.pairs, batch.graph_index, box)

    def bonded_energy(x):
        return torch.ops.gnnmd.bonded_priors(x, *bonded[1:])

    def repulsion_energy(r):
        return torch.ops.gnnmd.pair_repulsion(r, *repulsion[1:])

    x = bonded[0].clone().requires_grad_(True)
    r = repulsion[0].clone().requires_grad_(True)
    for function, argument in ((distances, x), (bonded_energy, x), (repulsion_energy, r)):
        assert torch.autograd.gradcheck(function, (argument,), eps=1e-6, atol=1e-6, rtol=1e-5)
        with pytest.raises(RuntimeError, match="first derivatives only"):
            torch.autograd.gradgradcheck(function, (argument,))


def test_bad_inputs_are_named(small_model, chignolin):
    batch, bonded, repulsion = prior_arguments(
        small_model, [chignolin.topology], perturbed(chignolin.positions_nm), torch.float64
    )
    bad_bonds = bonded[6].clone()
    bad_bonds[3, 1] = 10_000
    with pytest.raises(RuntimeError, match="bond entry 7 is 10000, outside the"):
        torch.ops.gnnmd.bonded_priors(*bonded[:6], bad_bonds, *bonded[7:])
    with pytest.raises(RuntimeError, match="angle 0 has no parameters"):
        torch.ops.gnnmd.bonded_priors(*bonded[:11], bonded[11][:0], bonded[12][:0], bonded[13][:0],
                                      *bonded[14:])  # fmt: skip
    with pytest.raises(RuntimeError, match=r"pair 0 \(beads \d+, \d+\) has no parameters"):
        torch.ops.gnnmd.pair_repulsion(*repulsion[:6], *(a[:0] for a in repulsion[6:9]), *repulsion[9:])
    with pytest.raises(RuntimeError, match=r"pairs entry \d+ is -1"):
        outside = -torch.ones(2, 1, dtype=torch.int64)
        torch.ops.gnnmd.pair_distances(bonded[0], outside, batch.graph_index, None)
    with pytest.raises(RuntimeError, match="parameters must have the positions' dtype"):
        torch.ops.gnnmd.bonded_priors(bonded[0].float(), *bonded[1:])
    box = triclinic_boxes(1, torch.float64).requires_grad_(True)
    with pytest.raises(RuntimeError, match="no gradient with respect to the box"):
        torch.ops.gnnmd.bonded_priors(*bonded[:2], box, *bonded[3:])
    with pytest.raises(RuntimeError, match="no gradient with respect to the box"):
        torch.ops.gnnmd.pair_distances(bonded[0], batch.pairs, batch.graph_index, box)
    sigma = repulsion[7].clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="the repulsion parameters are fixed"):
        torch.ops.gnnmd.pair_repulsion(*repulsion[:7], sigma, *repulsion[8:])


def test_the_tabulated_backend_uses_the_ops_in_the_runner_and_torchscript(small_model, chignolin, villin):
    native = use_backend(small_model, "tabulated")
    assert native.pair_distance_kernel is not None and native.priors.kernel is not None
    twin = copy.deepcopy(native)
    twin.pair_distance_kernel = twin.priors.kernel = None
    topologies = [chignolin.topology, villin.topology]
    positions = torch.cat([perturbed(chignolin.positions_nm), perturbed(villin.positions_nm, seed=4)])
    runners = [ReplicaRunner(m, topologies, positions, dtype=torch.float64, seed=5) for m in (twin, native)]
    for runner in runners:
        runner.step(30)
    scale = float(runners[0].positions.abs().max())
    torch.testing.assert_close(runners[1].positions, runners[0].positions, rtol=0, atol=1e-9 * scale)
    torch.testing.assert_close(runners[1].energies, runners[0].energies, rtol=1e-10, atol=0)
    graph = str(torch.jit.script(native).inlined_graph)
    # What exported files list as needed (ops.OPS) is exactly what a tabulated module calls.
    assert set(re.findall(r"gnnmd::(\w+)", graph)) == set(ops.OPS)
    assert "gnnmd::" not in str(torch.jit.script(small_model).inlined_graph)  # a reference model: no ops


@pytest.mark.parametrize("degeneracy", ["two beads on one point", "three collinear beads"])
def test_degenerate_geometry_gives_the_twins_gradient(small_model, chignolin, degeneracy):
    """Undefined angles give NaN forces on both paths (so a collapsing run stops with its clear error);
    a bond angle of exactly pi gives zero on both. (The energy of an angle whose beads coincide is
    atan2(±0, ±0): 0 or pi by the signs of zeros, which the two paths need not share.)"""
    positions = perturbed(chignolin.positions_nm)
    if degeneracy == "two beads on one point":
        positions[4] = positions[3]
    else:  # N, CA, C of residue 1 exactly on a line along x (angle 0-1-3 and dihedrals 0-1-3-*)
        step = torch.tensor([0.38, 0.0, 0.0], dtype=positions.dtype)
        positions[0], positions[3] = positions[1] - step, positions[1] + step
    batch = small_model.pack([chignolin.topology])
    native, twin = native_and_twin(small_model)
    results = []
    for priors in (twin, native):
        x = positions.clone().requires_grad_(True)
        energy = priors(x, batch, batch.pairs[:, :0], x.new_zeros(0))
        results.append((energy.detach(), torch.autograd.grad(energy.sum(), x)[0]))
    (e_twin, g_twin), (e_native, g_native) = results
    if degeneracy == "three collinear beads":
        torch.testing.assert_close(e_native, e_twin, rtol=1e-12, atol=0)
    assert bool(torch.isnan(g_twin).any())
    assert torch.equal(torch.isnan(g_native), torch.isnan(g_twin))
    finite = torch.isfinite(g_twin)
    scale = float(g_twin[finite].abs().max())
    torch.testing.assert_close(g_native[finite], g_twin[finite], rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("exclusions", [[3], [1, 2, 3]])
def test_repulsion_exclusions_equal_the_twin(small_model, proteins, exclusions):
    """TorchMD's priors leave bonded pairs out of the repulsion while the network sees them."""
    topologies, positions = proteins
    batch = small_model.pack(topologies)
    native, twin = native_and_twin(small_model)
    for priors in (native, twin):
        priors.repulsion_exclusions = list(exclusions)
    assert_priors_equal(native, twin, positions, batch, small_model.cutoff_nm)


def test_a_box_that_needs_a_gradient_takes_the_torch_path(small_model, chignolin):
    """A stress (ASE's strain derivative) needs ∂E/∂box, which the ops do not give: the tabulated model
    computes it through its torch twin, equal to the model without the ops."""
    native = use_backend(small_model, "tabulated")
    twin = copy.deepcopy(native)
    twin.pair_distance_kernel = twin.priors.kernel = None
    batch = native.pack([chignolin.topology])
    positions = perturbed(chignolin.positions_nm)
    results = []
    for model in (twin, native):
        box = triclinic_boxes(1, torch.float64).requires_grad_(True)
        energy = model(positions, batch, box)
        results.append((energy.detach(), torch.autograd.grad(energy.sum(), box)[0]))
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
