"""The one exception a stage raises for a problem a user can act on."""

from __future__ import annotations

from nsbiflow.errors import NsbiflowError


class StageError(NsbiflowError):
    """A stage cannot proceed; ``str(error)`` is the single line printed on stderr.

    The message names the file, column or check, and says what to do.
    """
