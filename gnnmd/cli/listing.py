"""``gnnmd systems`` and ``gnnmd models``: what ships with gnnmd, from :mod:`gnnmd.catalog` (no torch)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


class Systems:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from gnnmd.catalog import DEFAULT_SYSTEM, list_systems, read_system_description, systems_dir

        table = Table("system", "beads", "mapping", "description")
        for name in list_systems():
            # expected_beads is what loading the system checks its mapped bead count against.
            spec = read_system_description(systems_dir() / f"{name}.toml")
            label = f"{name} (default)" if name == DEFAULT_SYSTEM else name
            table.add_row(label, str(spec["expected_beads"]), spec["mapping"], spec["description"])
        Console().print(table)
        return 0


class Models:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from gnnmd.catalog import DEFAULT_MODEL, PRETRAINED_DIR, list_models, read_header

        table = Table("model", "trained", "size", "good for")
        for name in list_models():
            checkpoint = read_header(PRETRAINED_DIR / f"{name}.pt")
            config, metadata = checkpoint["config"], checkpoint["metadata"]
            table.add_row(
                f"{name} (default)" if name == DEFAULT_MODEL else name,
                "yes" if metadata["trained"] else "UNTRAINED",
                f"{config['hidden_channels']}x{config['num_interactions']}, {config['cutoff_nm']:g} nm",
                metadata.get("good_for", metadata.get("description", "")),
            )
        Console().print(table)
        return 0
