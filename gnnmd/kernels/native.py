"""The CPU kernels in ``native/*.c``: compiled on first use, called through ctypes.

The C sources need nothing but a C compiler (``$CC`` or ``cc``); the shared
library is cached under ``$GNNMD_CACHE`` (default ``~/.cache/gnnmd``), keyed by
a hash of the source and flags, so it is built once per machine. The kernels
use OpenMP; loaded after torch, the library binds to the libgomp torch already
loaded (same soname), so it shares torch's thread pool and thread count rather
than starting a second pool whose threads would spin against torch's.

Without a compiler, :func:`load` raises :class:`NativeKernelError` and callers
use the pure-torch path instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from torch import Tensor

from gnnmd.errors import GnnmdError

SOURCE_DIR = Path(__file__).with_name("native")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")


class NativeKernelError(GnnmdError):
    """A CPU kernel could not be compiled or loaded."""


def cache_dir() -> Path:
    return Path(os.environ.get("GNNMD_CACHE", Path.home() / ".cache" / "gnnmd")) / "kernels"


def _compiler() -> str:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise NativeKernelError("no C compiler found (set $CC or install gcc); the CPU kernels need one")
    return compiler


@cache
def load(name: str) -> ctypes.CDLL:
    """Compile (once per machine) and load ``native/<name>.c``."""
    source = SOURCE_DIR / f"{name}.c"
    compiler = _compiler()
    digest = hashlib.sha256(source.read_bytes() + " ".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    library = cache_dir() / f"{name}-{digest}.so"
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: concurrent processes never load a half-written file.
        with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
            built = Path(scratch) / library.name
            command = [compiler, *FLAGS, str(source), "-o", str(built)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise NativeKernelError(f"compiling {source} failed ({' '.join(command)}):\n{result.stderr}")
            os.replace(built, library)
    return ctypes.CDLL(str(library))


@cache
def available(name: str) -> bool:
    """Whether ``native/<name>.c`` compiles and loads here."""
    try:
        load(name)
    except (NativeKernelError, OSError) as error:
        print(f"gnnmd: CPU kernel {name!r} unavailable, using pure torch: {error}", file=sys.stderr)
        return False
    return True


def pointer(tensor: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())
