"""``gnnmd data qm``: labels equal the engine's, resume after kill -9 equals an uninterrupted run,
two processes equal one, unconverged frames are recorded and not labelled, bad input is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.build
import ase.io
import h5py
import numpy as np
import pytest

from gnnmd.cli import main
from gnnmd.data.dataset import ForceDataset, write_molecule
from gnnmd.data.qm import QMInputError, QMSettings, engine_for
from gnnmd.data.qm_labels import label
from gnnmd.topology import custom_topology

pytest.importorskip("pyscf", reason="labels come from PySCF (test extras)")
pytest.importorskip("tblite", reason="labels come from tblite (test extras)")

TBLITE = QMSettings("tblite", "GFN2-xTB")


def water_frames(path: Path, count: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        atoms = ase.build.molecule("H2O")
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        frames.append(atoms)
    ase.io.write(str(path), frames)
    return path


def labels(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = ForceDataset(path)
    coordinates, forces = dataset.frames(0)
    return coordinates, forces, dataset.energies(0)


def test_labels_are_the_engines(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 5)
    out = tmp_path / "labels.h5"
    summary = label(source, out, TBLITE, every=2)
    assert summary["frames"] == 3 and summary["converged"] == 3
    coordinates, forces, energies = labels(out)
    engine = engine_for(TBLITE)
    for k, atoms in enumerate(ase.io.read(str(source), index="::2")):
        direct = engine.label(atoms.numbers, atoms.positions * 0.1)
        np.testing.assert_allclose(coordinates[k], atoms.positions * 0.1, rtol=1e-6)
        assert energies[k] == pytest.approx(direct.energy_kj_per_mol, rel=1e-12)
        np.testing.assert_allclose(forces[k], direct.forces_kj_per_mol_nm, rtol=1e-5, atol=1e-4)
    with h5py.File(out) as file:
        group = file["molecules/water"]
        record = json.loads(group.attrs["qm"])
        assert record["settings"]["method"] == "GFN2-xTB" and record["engine_version"]
        assert group["qm_frames/source_frame"][()].tolist() == [0, 2, 4]


def test_two_processes_equal_one_and_a_finished_run_is_not_redone(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 6)
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    label(source, one, TBLITE, processes=1)
    label(source, two, TBLITE, processes=2)
    for a, b in zip(labels(one), labels(two), strict=True):
        np.testing.assert_array_equal(a, b)
    assert label(source, one, TBLITE)["computed"] == 0


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 8)
    killed = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "gnnmd.cli", "data", "qm", str(source), "-o", str(killed),
               "--engine", "pyscf", "--method", "b3lyp"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = Path(str(killed) + ".qm")
    deadline = time.time() + 120
    while len(list(work.glob("frame-*.npz"))) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list(work.glob("frame-*.npz")))
    assert 2 <= done < 8 and not killed.exists()
    settings = QMSettings("pyscf", "b3lyp", "sto-3g")
    assert label(source, killed, settings)["computed"] == 8 - done
    straight = tmp_path / "straight.h5"
    label(source, straight, settings)
    for a, b in zip(labels(killed), labels(straight), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-6)


def test_unconverged_frames_are_recorded_not_labelled(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 2)
    out = tmp_path / "labels.h5"
    summary = label(source, out, QMSettings("pyscf", "b3lyp", "sto-3g", max_cycle=2))
    assert summary["converged"] == 0 and not summary["written"] and not out.exists()
    record = np.load(Path(str(out) + ".qm") / "frame-000000.npz", allow_pickle=False)
    assert not bool(record["converged"]) and np.isnan(float(record["energy"]))


def test_a_resume_with_other_settings_is_refused(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 2)
    out = tmp_path / "labels.h5"
    label(source, out, TBLITE)
    with pytest.raises(QMInputError, match="settings"):
        label(source, out, QMSettings("tblite", "GFN1-xTB"))


def test_dataset_input_and_cli(tmp_path, capsys):
    atoms = ase.build.molecule("CH3CH2OH")
    topology = custom_topology("ethanol", atoms.get_chemical_symbols(), atoms.get_masses(), [])
    positions = np.stack([atoms.positions * 0.1, atoms.positions * 0.1 + 0.001])
    source = tmp_path / "ethanol.h5"
    write_molecule(source, topology, positions, np.zeros_like(positions))
    out = tmp_path / "labels.h5"
    command = ["data", "qm", str(source), "-o", str(out), "--engine", "tblite", "--method", "GFN2-xTB"]
    assert main(command) == 0
    assert "2 of 2 frames converged" in capsys.readouterr().out
    coordinates, forces, energies = labels(out)
    assert coordinates.shape == (2, 9, 3) and np.isfinite(energies).all()


def test_every_molecule_of_a_dataset_in_one_run(tmp_path):
    """A dataset of two molecules is labelled in one run (frames numbered across molecules); each
    molecule's labels equal a run of that molecule alone, and --every applies within each."""
    source = tmp_path / "two.h5"
    for name, count in (("ethanol", 3), ("water", 4)):
        atoms = ase.build.molecule("CH3CH2OH" if name == "ethanol" else "H2O")
        topology = custom_topology(name, atoms.get_chemical_symbols(), atoms.get_masses(), [])
        rng = np.random.default_rng(count)
        positions = atoms.positions * 0.1 + rng.normal(0.0, 0.003, (count, len(atoms), 3))
        write_molecule(source, topology, positions, np.zeros_like(positions))
    together = tmp_path / "together.h5"
    summary = label(source, together, TBLITE, every=2, processes=2)
    assert summary["frames"] == 2 + 2 and summary["converged"] == 4
    both = ForceDataset(together)
    assert [t.name for t in both.topologies] == ["ethanol", "water"]
    for index, name in enumerate(["ethanol", "water"]):
        alone = tmp_path / f"{name}.h5"
        label(source, alone, TBLITE, every=2, molecule=name)
        expected = labels(alone)
        got = (*both.frames(index), both.energies(index))
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)
        with h5py.File(together) as file:
            assert file[f"molecules/{name}/qm_frames/source_frame"][()].tolist() == [0, 2]


def test_bad_frames_are_refused_by_name(tmp_path):
    frames = [ase.build.molecule("H2O"), ase.build.molecule("H2O")]
    frames[1].positions[1] = frames[1].positions[0] + 0.1
    source = tmp_path / "water.xyz"
    ase.io.write(str(source), frames)
    with pytest.raises(QMInputError, match="water.xyz frame 1: atoms 0 and 1"):
        label(source, tmp_path / "labels.h5", TBLITE)
    assert main(["data", "qm", str(source), "-o", str(tmp_path / "x.h5"), "--multiplicity", "2"]) == 2


def test_torchrun_ranks_equal_one_process(tmp_path):
    source = water_frames(tmp_path / "water.xyz", 5)
    single, ranked = tmp_path / "single.h5", tmp_path / "ranked.h5"
    label(source, single, TBLITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "gnnmd.cli", "data", "qm", str(source), "-o", str(ranked), "--engine", "tblite",
               "--method", "GFN2-xTB"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("5 of 5 frames converged") == 1  # rank 0 reports
    for a, b in zip(labels(single), labels(ranked), strict=True):
        np.testing.assert_array_equal(a, b)


def test_torchrun_across_machines_needs_no_shared_disk(tmp_path):
    """Two torchrun nodes (one rank each) in separate folders, as on two machines without a shared
    disk: rank 1's labels reach rank 0 through the process group; the dataset equals one process's."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = water_frames(tmp_path / "water.xyz", 5)
    single = tmp_path / "single.h5"
    label(source, single, TBLITE)
    machines = [tmp_path / "machine0", tmp_path / "machine1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    for node, folder in enumerate(machines):
        folder.mkdir()
        shutil.copy(source, folder / "water.xyz")
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                   "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                   "-m", "gnnmd.cli", "data", "qm", "water.xyz", "-o", "labels.h5", "--engine", "tblite",
                   "--method", "GFN2-xTB"]  # fmt: skip
        runs.append(subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    assert "5 of 5 frames converged" in outputs[0][0]
    assert not (machines[1] / "labels.h5").exists()  # only rank 0 writes the dataset
    assert sorted(p.name for p in (machines[1] / "labels.h5.qm").glob("frame-*")) == [
        "frame-000001.npz", "frame-000003.npz"]  # fmt: skip
    for a, b in zip(labels(single), labels(machines[0] / "labels.h5"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_trajectory_with_topology(tmp_path):
    import mdtraj

    source = water_frames(tmp_path / "water.xyz", 3)
    images = ase.io.read(str(source), index=":")
    ase.io.write(str(tmp_path / "water.pdb"), images[0])
    topology = mdtraj.load(str(tmp_path / "water.pdb")).topology
    positions = np.stack([atoms.positions * 0.1 for atoms in images])
    mdtraj.Trajectory(positions, topology).save_dcd(str(tmp_path / "water.dcd"))
    out = tmp_path / "labels.h5"
    assert label(tmp_path / "water.dcd", out, TBLITE, topology=tmp_path / "water.pdb")["converged"] == 3
    from_xyz = tmp_path / "xyz.h5"
    label(source, from_xyz, TBLITE)
    np.testing.assert_allclose(labels(out)[2], labels(from_xyz)[2], rtol=1e-6)


def test_a_second_labeller_is_refused_while_one_runs(tmp_path):
    from gnnmd.runfolder import RunFolderBusyError, RunFolderLock

    source = water_frames(tmp_path / "water.xyz", 2)
    out = tmp_path / "labels.h5"
    holder = RunFolderLock(Path(str(out) + ".qm")).acquire()  # another labeller, as far as this one sees
    try:
        with pytest.raises(RunFolderBusyError):
            label(source, out, TBLITE)
    finally:
        holder.release()
    assert label(source, out, TBLITE)["converged"] == 2
