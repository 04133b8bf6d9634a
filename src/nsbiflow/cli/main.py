"""Entry point of the ``nsbiflow`` console script: the group plus every command module."""

from __future__ import annotations

import importlib

from nsbiflow.cli.app import cli

COMMAND_MODULES = ("nsbiflow.cli.local", "nsbiflow.cli.compile", "nsbiflow.cli.maintenance")
OPTIONAL_COMMAND_MODULES = (
    "nsbiflow.cli.cluster",
    "nsbiflow.cli.archive",
    "nsbiflow.cli.report",
    "nsbiflow.cli.serve",
    "nsbiflow.cli.fit",
)


def _register() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    for module in OPTIONAL_COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_register()


def main() -> None:
    """Run the CLI."""
    cli(prog_name="nsbiflow")
