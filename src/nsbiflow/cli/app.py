"""The click group and the error handling every command shares: one line per problem, no traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from nsbiflow import __version__
from nsbiflow.errors import NsbiflowError, SpecError

STORE_OPTION = click.option(
    "--store", "store_uri", metavar="URI", help="folder or s3://bucket/prefix [$NSBIFLOW_STORE, ./.nsbiflow]"
)
"""The artifact store option every store-using command shares."""

STEPS_OPTION = click.option(
    "--steps",
    "steps_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="extra folders with step definitions (<name>/step.yaml)",
)
"""Extra step-definition folders, for every command that loads a workflow."""


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` to stderr and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def quiet_broken_pipe() -> None:
    """The reader of our output went away (``nsbiflow runs | head``): stop quietly, exit 141 like SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush has nowhere to fail
    except (OSError, ValueError):
        pass
    sys.exit(141)


class NsbiflowGroup(click.Group):
    """A click group that turns nsbiflow errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, reporting ``NsbiflowError`` as plain lines."""
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at exit
            return result
        except BrokenPipeError:
            quiet_broken_pipe()
        except SpecError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(exc.exit_code)
        except NsbiflowError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished steps are kept in the store, run again to resume", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: still one line, the traceback on request
            if os.environ.get("NSBIFLOW_DEBUG") == "1":
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (please report it; NSBIFLOW_DEBUG=1 shows the traceback)",
                70,
            )


@click.group(cls=NsbiflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nsbiflow")
def cli() -> None:
    """nsbiflow: declarative NSBI analysis workflows, run locally, on Argo Workflows, or on REANA."""
