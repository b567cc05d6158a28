"""Build the mlcg test fixture: two CGSchNet models saved by mlcg itself, and mlcg's energies and forces.

mlcg is not on the package index, so the tests cannot run it; they compare gnnmd's import with
what mlcg computed here, from its public source. Run once (records the mlcg commit)::

    git --git-dir=MIRROR archive COMMIT src | tar -x -C /tmp/mlcg_src
    python scripts/make_mlcg_fixture.py --mlcg-src /tmp/mlcg_src/src --commit COMMIT \\
        -o tests/interop/data/mlcg

It needs torch_geometric and networkx (mlcg's own imports) but not torch_cluster: the radius
graph is computed here by brute force (every pair closer than the cutoff), which is what
torch_cluster returns for a molecule this small.

Two models, random weights and priors near chignolin's geometry, units Å and kcal/mol:

* ``ca``: CA beads typed by mlcg's ``CA_MAP``; chain bonds, angles and dihedrals from
  ``build_cg_topology``; repulsion on mlcg's default "fully connected" list; Gaussian basis
  with an IdentityCutoff; tanh; readout widths [12, 8].
* ``ca_terminal``: as ``ca``, with mlcg's default ``special_terminal=True``: the first and last
  bead typed ``t + len(CA_MAP)``; a 42-row embedding; no dihedral prior (mlcg's dense
  types⁴ tables would make the file 80 MB).
* ``opeps``: N, CA, CB, C, O beads typed by ``OPEPS_MAP``; bonds from
  ``build_opeps_connectivity_matrix``, angles and dihedrals from ``get_n_paths``, repulsion on
  ``make_non_bonded_set`` (pairs more than two bonds apart); trainable Gaussian basis with a
  CosineCutoff; SiLU; readout widths [10].
* ``opeps_residue``: the ``opeps`` model file itself, evaluated with the repulsion on
  ``make_non_bonded_set`` with its default ``residue_exclusion`` (no pair within one residue):
  which pairs a prior acts on is not in an mlcg model file, only the reference changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import mdtraj
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PDB = ROOT / "gnnmd" / "shipped" / "systems" / "chignolin_cln025_5awl.pdb"
CUTOFF_ANGSTROM = 30.0  # every pair of chignolin lies inside: the repulsion lists are complete


def _import_mlcg(source: str) -> dict:
    sys.path.insert(0, source)
    import torch_geometric  # noqa: F401  (before the stub: it probes for torch_cluster itself)

    stub = types.ModuleType("torch_cluster")

    def radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target", **_):
        batch = torch.zeros(len(x), dtype=torch.long) if batch is None else batch
        close = (torch.cdist(x, x) < r) & (batch[:, None] == batch[None, :])
        if not loop:
            close.fill_diagonal_(False)
        target, neighbour = torch.nonzero(close, as_tuple=True)
        return torch.stack([neighbour, target])  # flow source_to_target: row 0 the neighbour

    stub.radius_graph = radius_graph
    stub.radius = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("not used"))
    sys.modules["torch_cluster"] = stub
    package = types.ModuleType("mlcg.nn")  # skip mlcg.nn's __init__ (it imports optional models)
    package.__path__ = [f"{source}/mlcg/nn"]
    sys.modules["mlcg.nn"] = package
    from mlcg.cg import _mappings, projection
    from mlcg.data.atomic_data import AtomicData
    from mlcg.geometry import topology as mlcg_topology
    from mlcg.nn.cutoff import CosineCutoff, IdentityCutoff
    from mlcg.nn.gradients import GradientsOut, SumOut
    from mlcg.nn.prior import Dihedral, HarmonicAngles, HarmonicBonds, Repulsion
    from mlcg.nn.radial_basis import GaussianBasis
    from mlcg.nn.schnet import StandardSchNet

    return {
        "_mappings": _mappings, "projection": projection, "AtomicData": AtomicData,
        "mlcg_topology": mlcg_topology, "CosineCutoff": CosineCutoff, "IdentityCutoff": IdentityCutoff,
        "GradientsOut": GradientsOut, "SumOut": SumOut, "Dihedral": Dihedral,
        "HarmonicAngles": HarmonicAngles, "HarmonicBonds": HarmonicBonds, "Repulsion": Repulsion,
        "GaussianBasis": GaussianBasis, "StandardSchNet": StandardSchNet,
    }  # fmt: skip


def _terms_ca(m: dict, traj: mdtraj.Trajectory, special_terminal: bool = False):
    topology = m["mlcg_topology"].Topology.from_mdtraj(traj.topology)
    cg = m["projection"].build_cg_topology(
        topology, cg_mapping=m["_mappings"].CA_MAP, special_terminal=special_terminal
    )
    keep = traj.topology.select("name CA")
    atom_types = [int(t) for t in cg.types]  # mlcg's own typing (chain ends apart with special_terminal)
    lists = {
        "bonds": cg.bonds2torch(),
        "angles": cg.angles2torch(),
        "dihedrals": cg.dihedrals2torch(),
        "repulsion": cg.fully_connected2torch(),
    }
    if special_terminal:  # mlcg's dihedral tables are dense over types⁴: 88 MB at 42 types
        del lists["dihedrals"]
    return keep, torch.tensor(atom_types), lists


def _terms_opeps(m: dict, traj: mdtraj.Trajectory, residue_exclusion: bool = False):
    order = ("N", "CA", "CB", "C", "O")
    keep, resnames = [], []
    for residue in traj.topology.residues:
        if not residue.is_protein:
            continue
        resnames.append(residue.name)
        names = {atom.name: atom.index for atom in residue.atoms}
        keep += [names[name] for name in order if name in names]
    keep = np.array(keep)
    atoms = [traj.topology.atom(i) for i in keep]
    atom_types = [m["_mappings"].OPEPS_MAP[(atom.residue.name, atom.name)][1] for atom in atoms]
    connectivity = m["projection"].build_opeps_connectivity_matrix(resnames)
    topology = m["mlcg_topology"].Topology()
    for i in keep:
        atom = traj.topology.atom(i)
        topology.add_atom(0, atom.name, atom.residue.name, atom.residue.index)
    bonds = torch.nonzero(torch.triu(connectivity)).t()
    for i, j in bonds.t().tolist():
        topology.add_bond(i, j)
    lists = {
        "bonds": bonds,
        "angles": m["mlcg_topology"].get_n_paths(connectivity, n=3),
        "dihedrals": m["mlcg_topology"].get_n_paths(connectivity, n=4),
        "repulsion": m["projection"].make_non_bonded_set(
            topology, 3, m["projection"].make_opep_residue_indices(resnames) if residue_exclusion else None,
            residue_exclusion=residue_exclusion,
        ),
    }  # fmt: skip
    return keep, torch.tensor(atom_types), lists


def _statistics(order: int, values: torch.Tensor, term_types: torch.Tensor, make) -> dict:
    """Per type tuple, both orientations (as mlcg's compute_statistics stores them)."""
    stats = {}
    for key in sorted({tuple(t) for t in term_types.t().tolist()}):
        mask = torch.all(term_types.t() == torch.tensor(key), dim=1)
        params = make(values[mask])
        stats[key] = params
        stats[tuple(reversed(key))] = params
    return stats


def _model(m: dict, kind: str, atom_types, lists, positions, generator):
    from mlcg.geometry.internal_coordinates import compute_angles_cos, compute_distances, compute_torsions

    pos = torch.as_tensor(positions, dtype=torch.float32)

    def types_of(mapping):
        return atom_types[mapping]

    def rand(scale):
        return float(torch.rand((), generator=generator) * scale)

    bonds = compute_distances(pos, lists["bonds"])
    angles = compute_angles_cos(pos, lists["angles"])
    bond_stats = _statistics(2, bonds, types_of(lists["bonds"]),
                             lambda v: {"x_0": v.mean() + 0.05, "k": 20.0 + rand(80.0)})  # fmt: skip
    angle_stats = _statistics(3, angles, types_of(lists["angles"]),
                              lambda v: {"x_0": v.mean() - 0.05, "k": 10.0 + rand(30.0)})  # fmt: skip
    n_degs = 3

    def dihedral(_):
        return {
            "v_0": rand(1.0),
            "k1s": {f"k1_{n}": rand(1.0) - 0.5 for n in range(1, n_degs + 1)},
            "k2s": {f"k2_{n}": rand(1.0) - 0.5 for n in range(1, n_degs + 1)},
        }

    if "dihedrals" in lists:
        torsions = compute_torsions(pos, lists["dihedrals"])
        dihedral_stats = _statistics(4, torsions, types_of(lists["dihedrals"]), dihedral)
    distances = compute_distances(pos, lists["repulsion"])
    repulsion_stats = _statistics(2, distances, types_of(lists["repulsion"]),
                                  lambda v: {"sigma": 3.0 + rand(1.0)})  # fmt: skip
    if kind.startswith("ca"):
        rbf = m["GaussianBasis"](m["IdentityCutoff"](0, CUTOFF_ANGSTROM), num_rbf=12)
        embedding = 42 if kind == "ca_terminal" else 25
        cutoff, act, widths = m["CosineCutoff"](0, CUTOFF_ANGSTROM), torch.nn.Tanh(), [12, 8]
    else:
        rbf = m["GaussianBasis"](m["CosineCutoff"](0, CUTOFF_ANGSTROM), num_rbf=10, trainable=True)
        cutoff, act, widths, embedding = m["CosineCutoff"](0, CUTOFF_ANGSTROM), torch.nn.SiLU(), [10], 26
    schnet = m["StandardSchNet"](rbf, cutoff, widths, hidden_channels=16, embedding_size=embedding,
                                 num_filters=14, num_interactions=2, activation=act)  # fmt: skip
    with torch.no_grad():  # mlcg zeroes biases; random ones test that gnnmd carries them
        for name, parameter in schnet.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        if not kind.startswith("ca"):
            rbf.offset.add_(0.2 * torch.randn(rbf.offset.shape, generator=generator))
            rbf.coeff.mul_(0.8)
    gradients = m["GradientsOut"]
    parts = {
        "bonds": gradients(m["HarmonicBonds"](bond_stats), "forces"),
        "angles": gradients(m["HarmonicAngles"](angle_stats), "forces"),
        "dihedrals": gradients(m["Dihedral"](dihedral_stats, n_degs=n_degs), "forces")
        if "dihedrals" in lists else None,
        "repulsion": gradients(m["Repulsion"](repulsion_stats), "forces"),
        "SchNet": gradients(schnet, "forces"),
    }  # fmt: skip
    models = torch.nn.ModuleDict({name: part for name, part in parts.items() if part is not None})
    return m["SumOut"](models, targets=["energy", "forces"])


def _evaluate(m: dict, model, atom_types, lists, frames: np.ndarray):
    from mlcg.neighbor_list.neighbor_list import make_neighbor_list

    model = model.double().eval()
    energies, forces = [], []
    for frame in frames:
        nls = {name: make_neighbor_list(name, mapping.shape[0], mapping) for name, mapping in lists.items()}
        data = m["AtomicData"].from_points(
            pos=torch.tensor(frame, dtype=torch.float64), atom_types=atom_types, neighborlist=nls
        )
        data.batch = torch.zeros(len(frame), dtype=torch.long)
        for name, mapping in lists.items():
            data.neighbor_list[name]["mapping_batch"] = torch.zeros(mapping.shape[1], dtype=torch.long)
        out = model(data).out
        energy = sum(out[name]["energy"] for name in lists) + out["SchNet"]["energy"]
        # Forces from the summed energy (mlcg's GradientsOut per term, added up).
        force = sum(out[name]["forces"] for name in [*lists, "SchNet"])
        energies.append(float(energy.sum()))
        forces.append(force.detach().numpy())
    return np.array(energies), np.array(forces)


#: Each fixture model: its terms and the seed of its own random generator, or None: the generator ca
#: and opeps share (seeded 20261128, drawn by ca first: regenerate those two together), or the name
#: of the fixture whose model file it evaluates (with other term lists).
KINDS = {
    "ca": (_terms_ca, None),
    "ca_terminal": (lambda m, traj: _terms_ca(m, traj, special_terminal=True), 20261129),
    "opeps": (_terms_opeps, None),
    "opeps_residue": (lambda m, traj: _terms_opeps(m, traj, residue_exclusion=True), "opeps"),
}
SHARED_SEED = 20261128


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mlcg-src", required=True, help="mlcg's src/ folder (public source)")
    parser.add_argument("--commit", required=True, help="the mlcg commit the source is from")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    m = _import_mlcg(args.mlcg_src)
    traj = mdtraj.load(str(PDB))
    args.output.mkdir(parents=True, exist_ok=True)
    record_file = args.output / "fixture.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    structure = f"gnnmd/shipped/systems/{PDB.name}"
    record.update({"mlcg_commit": args.commit, "structure": structure, "units": "angstrom, kcal/mol"})
    shared = torch.Generator().manual_seed(SHARED_SEED)
    for kind in args.kinds:
        seed = KINDS[kind][1]
        keep, atom_types, lists = KINDS[kind][0](m, traj)
        native = traj.xyz[0, keep] * 10.0  # Å
        noise = np.random.default_rng(7).normal(scale=0.25, size=(3, *native.shape))
        frames = np.concatenate([native[None], native[None] + noise]).astype(np.float64)
        if isinstance(seed, str):  # another fixture's model file (the source library's pickle)
            model = torch.load(args.output / f"{seed}_model.pt", weights_only=False)
        else:
            generator = shared if seed is None else torch.Generator().manual_seed(seed)
            torch.manual_seed(0)
            model = _model(m, kind, atom_types, lists, native, generator)
            torch.save(model, args.output / f"{kind}_model.pt")
        energies, forces = _evaluate(m, model, atom_types, lists, frames)
        np.savez(
            args.output / f"{kind}_reference.npz",
            positions_angstrom=frames,
            atom_types=atom_types.numpy(),
            energy_kcal_per_mol=energies,
            forces_kcal_per_mol_per_angstrom=forces,
            **{f"terms_{name}": mapping.numpy() for name, mapping in lists.items()},
        )
        record[kind] = {"beads": len(keep), "terms": {k: int(v.shape[1]) for k, v in lists.items()}}
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
