"""Build the compiled op library (``csrc/*.cpp`` -> ``lib/libgnnmd_ops.so``) against the installed torch.

``python -m gnnmd.kernels.build`` (run by ``make run`` / ``make test`` after installing
gnnmd) compiles the C++ ops with the system C++ compiler (``$CXX``, else ``c++``/``g++``)
and torch's headers and libraries. The library is portable: no ``-march=native``; the hot
loops carry AVX-512, AVX2 and baseline versions, chosen by the CPU at load time. A stamp
beside it records the torch version and the sources' hash; :mod:`gnnmd.kernels.ops`
refuses a library built for another torch or from other sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).with_name("csrc")
LIBRARY_DIR = Path(__file__).with_name("lib")
LIBRARY_NAME = "libgnnmd_ops.so"
STAMP_NAME = "build.json"


class BuildError(RuntimeError):
    """The op library could not be compiled."""


def sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.cpp"))


def source_hash() -> str:
    """SHA-256 of the sources and the headers they include."""
    digest = hashlib.sha256()
    for path in sorted([*sources(), *SOURCE_DIR.glob("*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def compiler() -> str:
    found = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not found:
        raise BuildError("no C++ compiler found (set $CXX or install g++); the CPU ops need one")
    return found


def command(output: Path) -> list[str]:
    """The compile-and-link command for ``output``."""
    import torch
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    libraries = cpp_extension.library_paths()
    links = [f"-L{path}" for path in libraries] + [f"-Wl,-rpath,{path}" for path in libraries]
    return [
        compiler(), "-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *includes, *(str(s) for s in sources()), "-o", str(output), *links, "-lc10", "-ltorch", "-ltorch_cpu",
    ]  # fmt: skip


def stamp() -> dict:
    import torch

    return {"torch": torch.__version__, "sources_sha256": source_hash()}


def is_current() -> bool:
    path = LIBRARY_DIR / STAMP_NAME
    if not (LIBRARY_DIR / LIBRARY_NAME).is_file() or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()) == stamp()
    except ValueError:
        return False


def build(force: bool = False) -> Path:
    """Compile the library unless an up-to-date one exists; returns its path."""
    library = LIBRARY_DIR / LIBRARY_NAME
    if not force and is_current():
        return library
    LIBRARY_DIR.mkdir(exist_ok=True)
    # Built beside the target and renamed: a process loading the library never sees half a file.
    with tempfile.TemporaryDirectory(dir=LIBRARY_DIR) as scratch:
        built = Path(scratch) / LIBRARY_NAME
        arguments = command(built)
        result = subprocess.run(arguments, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"compiling the gnnmd ops failed:\n{' '.join(arguments)}\n{result.stderr}")
        os.replace(built, library)
    (LIBRARY_DIR / STAMP_NAME).write_text(json.dumps(stamp(), indent=2) + "\n")
    return library


def main() -> int:
    try:
        path = build(force="--force" in sys.argv)
    except BuildError as error:
        print(f"gnnmd: {error}", file=sys.stderr)
        return 1
    print(f"gnnmd ops library: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
