"""The op library is part of an install: `make` builds it in the tree, and a wheel built where torch
is importable carries it (pip install --no-build-isolation .)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from gnnmd import catalog
from gnnmd.kernels import build

ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_built_with_torch_carries_the_op_library(tmp_path):
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", "-w", str(tmp_path), str(ROOT)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("gnnmd-*.whl")
    assert not wheel.name.endswith("-none-any.whl")  # a platform wheel: it holds compiled code
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert f"gnnmd/kernels/lib/{build.LIBRARY_NAME}" in names
        stamp = json.loads(archive.read(f"gnnmd/kernels/lib/{build.STAMP_NAME}"))
    assert stamp == {"torch": torch.__version__, "sources_sha256": build.source_hash()}
    # The shipped files travel as package data, found in the wheel where gnnmd.assets looks.
    shipped = ROOT / "gnnmd" / "shipped"
    files = [path for path in shipped.rglob("*") if path.is_file()]
    expected = {f"gnnmd/{path.relative_to(shipped.parent).as_posix()}" for path in files}
    assert expected and expected <= set(names), sorted(expected - set(names))[:5]
    assert {f"gnnmd/shipped/systems/{name}.toml" for name in catalog.list_systems()} <= set(names)
    assert {f"gnnmd/shipped/models/{name}.pt" for name in catalog.list_models()} <= set(names)
