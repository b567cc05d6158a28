"""``gnnmd systems`` and ``gnnmd models``: what ships with gnnmd."""

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
        from gnnmd.systems import DEFAULT_SYSTEM, list_systems, load_system

        table = Table("system", "beads", "mapping", "description")
        for name in list_systems():
            system = load_system(name)
            label = f"{name} (default)" if name == DEFAULT_SYSTEM else name
            table.add_row(label, str(system.topology.n_beads), system.topology.mapping, system.description)
        Console().print(table)
        return 0


class Models:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from gnnmd.models import DEFAULT_MODEL, list_models, model_path, read_checkpoint

        table = Table("model", "trained", "size", "good for")
        for name in list_models():
            checkpoint = read_checkpoint(model_path(name))
            config, metadata = checkpoint["config"], checkpoint["metadata"]
            table.add_row(
                f"{name} (default)" if name == DEFAULT_MODEL else name,
                "yes" if metadata["trained"] else "UNTRAINED",
                f"{config['hidden_channels']}x{config['num_interactions']}, {config['cutoff_nm']:g} nm",
                metadata.get("good_for", metadata.get("description", "")),
            )
        Console().print(table)
        return 0
