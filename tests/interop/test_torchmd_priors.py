"""TorchMD force-field priors and PSF topologies imported into gnnmd compute what torchmd computes,
and ``gnnmd import torchmd-net`` writes a checkpoint the rest of gnnmd runs."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnnmd.cli import main
from gnnmd.errors import ImportModelError, TopologyError
from gnnmd.interop.importing import import_torchmdnet
from gnnmd.interop.torchmdnet import ONE_LETTER
from gnnmd.models import load_model
from gnnmd.systems import load_system
from tests.interop.test_torchmdnet_import import save_checkpoint

parmed = pytest.importorskip("parmed")
pytest.importorskip("torchmd", reason="the comparison runs torchmd itself (test extras)")
from torchmd.forcefields.forcefield import ForceField  # noqa: E402
from torchmd.forces import Forces  # noqa: E402
from torchmd.parameters import Parameters  # noqa: E402

warnings.filterwarnings("ignore", message=".*CUDA.*")
CUTOFF_ANGSTROM = 9.0


def write_psf(path: Path, system, with_angles: bool, with_dihedrals: bool) -> Path:
    """A CA PSF as torchmd-cg writes it: types CA + one-letter code, masses 0, consecutive bonds."""
    structure = parmed.Structure()
    topology = system.topology
    for i, residue in enumerate(topology.residue_names):
        atom = parmed.Atom(name="CA", type=f"CA{ONE_LETTER[residue]}", mass=0.0, charge=0.0)
        structure.add_atom(atom, residue, int(topology.residue_ids[i]), "A")
    atoms = structure.atoms
    n = len(atoms)
    for i in range(n - 1):
        structure.bonds.append(parmed.Bond(atoms[i], atoms[i + 1]))
    if with_angles:
        for i in range(n - 2):
            structure.angles.append(parmed.Angle(atoms[i], atoms[i + 1], atoms[i + 2]))
    if with_dihedrals:
        for i in range(n - 3):
            structure.dihedrals.append(parmed.Dihedral(*atoms[i : i + 4]))
    parmed.charmm.CharmmPsfFile.from_structure(structure).write_psf(str(path))
    return path


def write_force_field(path: Path, atom_types: list[str]) -> Path:
    """Bonds and angles per type, dihedrals with a wildcard and a specific entry, lj per type."""
    rng = np.random.default_rng(0)
    document = {
        "atomtypes": atom_types,
        "bonds": {f"({a}, {b})": {"k0": float(rng.uniform(50, 80)), "req": float(rng.uniform(3.7, 3.9))}
                  for a in atom_types for b in atom_types if a <= b},
        "angles": {f"(X, {b}, X)": {"k0": float(rng.uniform(5, 10)), "theta0": float(rng.uniform(90, 120))}
                   for b in atom_types},
        "dihedrals": {
            "(X, X, X, X)": {"terms": [{"phi_k": 0.3, "per": 1, "phase": 30.0},
                                       {"phi_k": 0.2, "per": 2, "phase": -60.0}]},
            f"({atom_types[0]}, X, X, {atom_types[1]})": {"terms": [{"phi_k": 0.5, "per": 3, "phase": 10.0}]},
        },
        "lj": {t: {"sigma": float(rng.uniform(3.5, 4.5)), "epsilon": float(rng.uniform(0.5, 1.5))}
               for t in atom_types},
        "masses": {t: 12.0 for t in atom_types},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


def torchmd_reference(psf: Path, force_field: Path, terms: list[str], topology, positions_nm: np.ndarray):
    """torchmd's prior energy (kcal/mol) and forces (kcal/mol/Å)."""
    structure = parmed.charmm.CharmmPsfFile(str(psf))
    mol = types.SimpleNamespace(
        numAtoms=topology.n_beads, atomtype=np.array([a.type for a in structure.atoms]),
        charge=np.zeros(topology.n_beads), masses=None, bonds=topology.bonds, angles=topology.angles,
        dihedrals=topology.dihedrals, impropers=np.zeros((0, 4), dtype=np.int64),
    )  # fmt: skip
    parameters = Parameters(ForceField.create(mol, str(force_field)), mol, terms, precision=torch.float64)
    # torchmd 1.1.2 builds the pair tables only for a term spelled "lj"; RepulsionCG needs them too.
    parameters.A, parameters.B = parameters.get_AB()
    forces = Forces(parameters, terms=terms, cutoff=CUTOFF_ANGSTROM, exclusions=("bonds", "angles", "1-4"))
    positions = torch.tensor(positions_nm * 10.0)[None]
    out = torch.zeros_like(positions)
    energies = forces.compute(positions, torch.zeros(1, 3, 3, dtype=torch.float64), out)
    return float(energies[0]), out[0]  # compute() returns the total per system


@pytest.fixture
def chignolin_files(tmp_path):
    system = load_system("chignolin", "ca")
    psf = write_psf(tmp_path / "chignolin_ca.psf", system, with_angles=True, with_dihedrals=True)
    atom_types = sorted({f"CA{ONE_LETTER[r]}" for r in system.topology.residue_names})
    force_field = write_force_field(tmp_path / "priors.yaml", atom_types)
    # The network is switched off (zero weights) so that the priors alone are compared.
    checkpoint = save_checkpoint(
        tmp_path / "model.ckpt", cutoff_upper=CUTOFF_ANGSTROM, neighbor_embedding=False
    )
    raw = torch.load(checkpoint, weights_only=True)
    raw["state_dict"] = {
        k: torch.zeros_like(v) if "output_network" in k else v for k, v in raw["state_dict"].items()
    }
    raw["state_dict"]["model.mean"] = torch.zeros((), dtype=torch.float64)
    torch.save(raw, checkpoint)
    return system, psf, force_field, checkpoint


@pytest.mark.parametrize(
    "terms",
    [
        ["bonds", "angles", "dihedrals", "repulsioncg"],
        ["bonds", "repulsioncg"],
        ["bonds", "dihedrals", "repulsioncg"],
    ],
)
def test_priors_match_torchmd(chignolin_files, terms):
    system, psf, force_field, checkpoint = chignolin_files
    # A perturbed structure: forces far from the minimum of every term.
    positions = system.positions_nm + np.random.default_rng(1).normal(0.0, 0.02, system.positions_nm.shape)
    model, topology = import_torchmdnet(checkpoint, psf, priors=force_field, terms=terms)
    assert topology.masses_amu.tolist() == [12.0] * topology.n_beads  # from the force field
    expected_energy, expected_forces = torchmd_reference(psf, force_field, terms, topology, positions)
    energy, forces = model.energy_and_forces(torch.tensor(positions), model.pack([topology]))
    assert abs(float(energy[0]) / 4.184 - expected_energy) <= 1e-6 * abs(expected_energy)
    scale = float(expected_forces.pow(2).mean().sqrt())
    assert float((forces / 41.84 - expected_forces).abs().max()) <= 1e-6 * scale


def test_cli_import_writes_a_checkpoint_gnnmd_runs(tmp_path, chignolin_files, capsys):
    _, psf, force_field, _ = chignolin_files
    checkpoint = save_checkpoint(tmp_path / "trained.ckpt", seed=5, cutoff_upper=CUTOFF_ANGSTROM)
    out = tmp_path / "imported.pt"
    argv = ["import", "torchmd-net", str(checkpoint), "--topology", str(psf), "--priors", str(force_field),
            "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "imported" in capsys.readouterr().out
    direct, topology = import_torchmdnet(checkpoint, psf, priors=force_field)
    loaded = load_model(out, dtype=torch.float64)
    source = loaded.metadata["imported_from"]
    assert source["library"] == "torchmd-net" and len(source["sha256"]) == 64
    assert source["length_unit"] == "angstrom" and source["priors"]["terms"]
    positions = torch.tensor(load_system("chignolin", "ca").positions_nm)
    batch = loaded.pack([topology])
    torch.testing.assert_close(
        loaded.energy_and_forces(positions, batch), direct.energy_and_forces(positions, batch)
    )
    # The ordinary commands take it: a CA model reads shipped systems with the ca mapping.
    bench = ["bench", "--model", str(out), "--system", "chignolin", "--replicas", "2", "--steps", "3",
             "--warmup", "1", "--backend", "tabulated", "--json", str(tmp_path / "b.json")]  # fmt: skip
    assert main(bench) == 0
    assert main(["export", str(out), "--system", "chignolin", "-o", str(tmp_path / "m.pt")]) == 0
    # The PSF itself is a topology for export (masses recorded at import fill its massless atoms).
    exported_file = tmp_path / "p.pt"
    export = ["export", str(out), "--system", str(psf), "--dtype", "float64", "-o", str(exported_file)]
    assert main(export) == 0
    exported = torch.jit.load(str(exported_file))
    expected = loaded.energy_and_forces(positions, batch)[0]
    torch.testing.assert_close(exported(positions), expected[0], rtol=1e-6, atol=1e-6)


def test_dihedral_without_period_is_refused(tmp_path, chignolin_files):
    system, psf, force_field, checkpoint = chignolin_files
    document = yaml.safe_load(force_field.read_text())
    document["dihedrals"]["(X, X, X, X)"]["terms"][0]["per"] = 0
    force_field.write_text(yaml.safe_dump(document))
    with pytest.raises(ImportModelError, match="per=0"):
        import_torchmdnet(checkpoint, psf, priors=force_field)


def test_unknown_psf_type_and_missing_mass_are_refused(tmp_path, chignolin_files):
    _, psf, force_field, checkpoint = chignolin_files
    renamed = tmp_path / "renamed.psf"
    renamed.write_text(psf.read_text().replace("CAY", "CZZ"))
    with pytest.raises(ImportModelError, match="'CZZ'"):
        import_torchmdnet(checkpoint, renamed)
    with pytest.raises(TopologyError, match="mass 0"):
        import_torchmdnet(checkpoint, psf)  # no force field: no masses for the PSF's massless atoms


def test_requested_term_missing_from_the_force_field_is_refused(tmp_path, chignolin_files):
    _, psf, force_field, checkpoint = chignolin_files
    document = yaml.safe_load(force_field.read_text())
    del document["angles"]
    force_field.write_text(yaml.safe_dump(document))
    with pytest.raises(ImportModelError, match="angles"):
        import_torchmdnet(checkpoint, psf, priors=force_field, terms=["bonds", "angles"])


def test_no_terms_means_no_priors(chignolin_files):
    _, psf, force_field, checkpoint = chignolin_files
    model, topology = import_torchmdnet(checkpoint, psf, priors=force_field, terms=[])
    assert model.config.prior_terms == ()
    positions = torch.tensor(load_system("chignolin", "ca").positions_nm)
    energy, forces = model.energy_and_forces(positions, model.pack([topology]))
    # The network's output weights are zero in this fixture: without priors nothing is left.
    assert float(energy.abs().max()) == 0.0 and float(forces.abs().max()) == 0.0


def test_simulate_and_bench_a_psf_with_coordinates(tmp_path, chignolin_files, capsys):
    """TorchMD users hold a PSF and an XTC: gnnmd simulates and benches them as they are."""
    import json

    import mdtraj

    system, psf, force_field, _ = chignolin_files
    checkpoint = save_checkpoint(tmp_path / "trained.ckpt", seed=6, cutoff_upper=CUTOFF_ANGSTROM)
    out = tmp_path / "imported.pt"
    import_torchmdnet(checkpoint, psf, out, priors=force_field)
    _, topology = import_torchmdnet(checkpoint, psf, priors=force_field)
    coordinates = tmp_path / "start.xtc"
    mdtraj.Trajectory(system.positions_nm[None], topology.to_mdtraj()).save_xtc(str(coordinates))
    run = tmp_path / "run"
    argv = ["simulate", str(psf), "--coordinates", str(coordinates), "--model", str(out), "--replicas", "2",
            "--steps", "4", "--report-interval-ps", "0.004", "--dt-fs", "2", "--threads", "1",
            "-o", str(run)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["system_sources"] == [f"{psf} + {coordinates}"]
    assert main(["bench", "--model", str(out), "--system", str(psf), "--coordinates", str(coordinates),
                 "--replicas", "2", "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["bench", "--model", str(out), "--system", str(psf), "--steps", "2"]) == 2
    assert "--coordinates" in capsys.readouterr().err
