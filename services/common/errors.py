"""The one error a service raises to stop at start with a clear line instead of a traceback."""

from __future__ import annotations

__all__ = ["StartupError"]


class StartupError(Exception):
    """Something the service checked before starting is wrong; the CLI prints it, exit 2.

    The message names the setting to change (its flag and environment variable) where one is
    to blame.
    """
