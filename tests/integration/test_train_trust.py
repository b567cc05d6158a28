"""Training and data trust: nothing read back runs code, bad data is refused by name, a resumed
training run is the same run, non-finite losses stop, and torchrun ranks pick their own GPU."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.data.dataset import DatasetError, ForceDataset
from gnnmd.errors import CheckpointError, TrainingError
from gnnmd.models import PRETRAINED_DIR, load_model
from gnnmd.runfolder import RunFolderBusyError, RunFolderError, RunFolderLock
from gnnmd.sim.checkpoint import load_checkpoint
from gnnmd.train import Trainer, TrainingConfig
from tests.unit.test_training import student, teacher_dataset

CONFIG = TrainingConfig(epochs=1, batch_size=8, learning_rate=3e-3, validation_fraction=0.25, seed=1)


class Exploit:
    """A pickle that creates a file when unpickled: proof that code ran."""

    def __init__(self, sentinel) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def malicious(path, sentinel, payload: dict | None = None) -> None:
    torch.save({**(payload or {}), "exploit": Exploit(sentinel)}, path)


def test_train_state_cannot_run_code(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run").run()
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    sentinel = tmp_path / "pwned"
    malicious(tmp_path / "run" / "train_state.pt", sentinel, state)
    longer = TrainingConfig(**{**CONFIG.__dict__, "epochs": 2})
    refusal = (
        r"run/train_state.pt: not a readable training state \(it holds a Python object \(\S+\) that could"
    )
    with pytest.raises(CheckpointError, match=refusal):
        Trainer(student(teacher, 5), dataset, longer, tmp_path / "run").run()
    assert not sentinel.exists()


def test_simulation_checkpoint_and_model_files_cannot_run_code(tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    checkpoint = torch.load(PRETRAINED_DIR / "default.pt", weights_only=True)
    malicious(tmp_path / "model.pt", sentinel, checkpoint)
    with pytest.raises(
        CheckpointError, match=r"model.pt: not a readable gnnmd checkpoint \(it holds a Python object"
    ):
        load_model(tmp_path / "model.pt")
    malicious(tmp_path / "checkpoint.pt", sentinel)
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint.pt: not a readable checkpoint \(it holds a Python object \(\S*open\)",
    ):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with open(tmp_path / "x.npy", "wb") as handle:  # a pickle disguised as an array file
        pickle.dump(Exploit(sentinel), handle)
    np.save(tmp_path / "objects.npy", np.array([Exploit(sentinel)], dtype=object), allow_pickle=True)
    for name in ("x.npy", "objects.npy"):
        status = main(["data", "import-arrays", "chignolin", "--coordinates", str(tmp_path / name),
                       "--forces", str(tmp_path / name), "--length-unit", "nm", "--energy-unit", "kJ/mol",
                       "-o", str(tmp_path / "d.h5")])  # fmt: skip
        assert status == 2
        assert f"{name}: not a readable numeric .npy array" in capsys.readouterr().err
    assert not sentinel.exists()


def test_resume_on_other_data_is_refused(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "a.h5", chignolin)
    Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run").run()
    other, _ = teacher_dataset(tmp_path / "b.h5", chignolin, frames=40)
    longer = TrainingConfig(**{**CONFIG.__dict__, "epochs": 2})
    best = (tmp_path / "run" / "best.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"train_state.pt: field 'dataset_sha256' is '[0-9a-f]{64}'"):
        Trainer(student(teacher, 5), other, longer, tmp_path / "run").run()
    assert (tmp_path / "run" / "best.pt").read_bytes() == best  # untouched


def write_raw(path, chignolin, coordinates, forces) -> None:
    """A dataset written without gnnmd's checks (as another tool, or a bug, could)."""
    from gnnmd.data.dataset import write_molecule

    good_x = np.broadcast_to(chignolin.positions_nm, coordinates.shape)
    write_molecule(path, chignolin.topology, good_x, np.zeros_like(forces))
    with h5py.File(path, "a") as file:
        file["molecules/chignolin/coordinates"][...] = coordinates
        file["molecules/chignolin/forces"][...] = forces


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda x, f: f.__setitem__((3, 7, 1), np.nan), r"field 'forces', frame 3, bead 7: value nan is not"),
        (lambda x, f: f.__setitem__((2, 0, 0), 1e30), r"field 'forces', frame 2, bead 0: value 1e\+30 exc"),
        (lambda x, f: x.__imul__(10.0), r"field 'coordinates', frame 0: median bond length .* must be in nm"),
    ],
)  # fmt: skip
def test_bad_data_is_refused_on_open_naming_field_and_frame(tmp_path, chignolin, capsys, spoil, message):
    x = np.repeat(chignolin.positions_nm[None], 5, axis=0).astype(np.float32)
    f = np.ones_like(x)
    spoil(x, f)
    write_raw(tmp_path / "bad.h5", chignolin, x, f)
    with pytest.raises(DatasetError, match=rf"bad.h5: molecule 'chignolin', {message}"):
        ForceDataset(tmp_path / "bad.h5")
    assert main(["train", "--data", str(tmp_path / "bad.h5"), "-o", str(tmp_path / "run")]) == 2
    assert "bad.h5: molecule 'chignolin'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_wrong_shapes_name_the_field(tmp_path, chignolin):
    x = np.repeat(chignolin.positions_nm[None], 4, axis=0)
    write_raw(tmp_path / "d.h5", chignolin, x, np.zeros_like(x))
    with h5py.File(tmp_path / "d.h5", "a") as file:
        del file["molecules/chignolin/forces"]
        file["molecules/chignolin/forces"] = np.zeros((4, 48, 3), dtype=np.float32)
    with pytest.raises(DatasetError, match=r"field 'forces' has shape \(4, 48, 3\), expected \(4, 49, 3\)"):
        ForceDataset(tmp_path / "d.h5")


def test_a_damaged_hdf5_file_is_named(tmp_path, chignolin):
    teacher_dataset(tmp_path / "d.h5", chignolin, frames=64)
    data = bytearray((tmp_path / "d.h5").read_bytes())
    for offset in range(2048, len(data), 97):  # flip bits all over, past the superblock
        data[offset] ^= 0xFF
    (tmp_path / "d.h5").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"d.h5: (damaged or malformed dataset|not an HDF5 file)"):
        ForceDataset(tmp_path / "d.h5")


def test_non_finite_loss_stops_without_writing(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    model = student(teacher, 5)
    with torch.no_grad():
        model.network.readout[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"epoch 1: the training loss is not finite"):
        Trainer(model, dataset, CONFIG, tmp_path / "run").run()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".gnnmd.lock"]  # no best.pt, no state


def test_training_folder_has_one_owner_and_is_never_foreign(tmp_path, chignolin):
    dataset, teacher = teacher_dataset(tmp_path / "d.h5", chignolin)
    with RunFolderLock(tmp_path / "run"):
        with pytest.raises(RunFolderBusyError, match="run: in use by pid"):
            Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run").run()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(RunFolderError, match=r"is not empty \(notes.txt\)"):
        Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "mine").run()
    (tmp_path / "run" / "best.pt.tmp").write_bytes(b"killed while writing")
    Trainer(student(teacher, 5), dataset, CONFIG, tmp_path / "run").run()
    assert not (tmp_path / "run" / "best.pt.tmp").exists() and (tmp_path / "run" / "best.pt").is_file()


def test_each_torchrun_rank_trains_on_its_local_gpu(monkeypatch):
    """Rank k of a torchrun job on GPUs uses cuda:LOCAL_RANK and makes it current before NCCL starts."""
    from gnnmd import distributed

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.local_device("cuda") == torch.device("cuda:1")
    assert distributed.local_device("cpu") == torch.device("cpu")
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend))
    )
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    distributed.initialize("cuda")
    assert calls == [("set_device", torch.device("cuda:1")), ("init", "nccl")]
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="LOCAL_RANK 2 has no GPU: torch sees 2"):
        distributed.local_device("cuda")


def test_a_flipped_bit_in_the_frames_is_caught_by_the_checksums(tmp_path, chignolin):
    """One bit of one stored force value flipped on disk: a plausible value, caught by Fletcher-32."""
    teacher_dataset(tmp_path / "d.h5", chignolin, frames=8)
    with h5py.File(tmp_path / "d.h5", "r") as file:
        forces = file["molecules/chignolin/forces"]
        assert forces.fletcher32
        offset = forces.id.get_chunk_info(0).byte_offset  # the chunk of frames 0-7
    data = bytearray((tmp_path / "d.h5").read_bytes())
    data[offset + 100] ^= 0x01  # the lowest mantissa bit of one float: still finite and plausible
    (tmp_path / "d.h5").write_bytes(bytes(data))
    damaged = r"d.h5: damaged or malformed dataset \(a stored checksum does not match"
    with pytest.raises(DatasetError, match=damaged):
        ForceDataset(tmp_path / "d.h5")
