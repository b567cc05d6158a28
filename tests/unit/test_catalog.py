"""The catalog reads what ships without torch: system TOMLs and checkpoint headers, safely."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch

from gnnmd.catalog import TensorRecord, read_header
from gnnmd.errors import CheckpointError
from gnnmd.models import list_models, model_path, read_checkpoint
from gnnmd.systems import list_systems, load_system


def _plain(value):
    """The checkpoint with tensors replaced by their shapes, as the header has them."""
    if isinstance(value, torch.Tensor):
        return TensorRecord(tuple(value.shape))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


@pytest.mark.parametrize("name", list_models())
def test_header_equals_the_checkpoint_with_tensor_shapes(name):
    path = model_path(name)
    assert read_header(path) == _plain(read_checkpoint(path))


def test_a_header_that_would_run_code_is_refused_without_running_it(tmp_path):
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"format": "gnnmd-checkpoint", "x": Payload()}))
    with pytest.raises(CheckpointError, match=r"evil.pt: cannot read the checkpoint header \(global "
                       r"(posix|os)\.system is not allowed"):  # fmt: skip
        read_header(path)
    assert not sentinel.exists()
    not_zip = tmp_path / "plain.pt"
    not_zip.write_text("not a model")
    with pytest.raises(CheckpointError, match="plain.pt: cannot read the checkpoint header"):
        read_header(not_zip)


def test_listed_bead_counts_are_what_loading_gives():
    from gnnmd.catalog import read_system_description, systems_dir

    for name in list_systems():
        spec = read_system_description(systems_dir() / f"{name}.toml")
        system = load_system(name)
        assert (spec["expected_beads"], spec["mapping"]) == (system.topology.n_beads, system.topology.mapping)


@pytest.mark.parametrize("command", ["models", "systems"])
def test_listings_do_not_import_torch(command):
    """What keeps `gnnmd models` and `gnnmd systems` fast (timed in benchmarks/RESULTS.md)."""
    code = (
        f"import sys; from gnnmd.cli import main; status = main([{command!r}]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch', status)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "no torch 0"


def test_importing_gnnmd_imports_torch_only_before_openmm():
    code = (
        "import sys, gnnmd; print('torch' in sys.modules); import openmm; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr[-2000:]
