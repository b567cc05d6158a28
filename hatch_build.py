"""Wheel build hook: compile gnnmd's op library into the wheel (``pip install --no-build-isolation .``).

The library links against the installed torch, so it is built where torch is importable:
pip's default isolated build environment has no torch, and there the wheel is built
without it (with a warning that says how to build it). Editable installs skip the hook:
``make`` builds the library in the source tree (``python -m gnnmd.kernels.build``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        if importlib.util.find_spec("torch") is None:
            self.app.display_warning(
                "gnnmd: torch is not importable in this build environment, so the wheel has no op "
                "library; install with `pip install --no-build-isolation .`, or run "
                "`python -m gnnmd.kernels.build` after installing"
            )
            return
        source = Path(self.root) / "gnnmd/kernels/build.py"
        spec = importlib.util.spec_from_file_location("gnnmd_build", source)
        builder = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(builder)
        library = builder.build()
        build_data["force_include"][str(library)] = f"gnnmd/kernels/lib/{builder.LIBRARY_NAME}"
        stamp = library.with_name(builder.STAMP_NAME)
        build_data["force_include"][str(stamp)] = f"gnnmd/kernels/lib/{builder.STAMP_NAME}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
