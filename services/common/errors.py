"""The errors that stop a command at start with one clear line instead of a traceback."""

from __future__ import annotations

__all__ = ["StartupError", "SettingError"]


class StartupError(Exception):
    """Something the service checked before starting is wrong; the CLI prints it, exit 2.

    The message names the setting to change (its flag and environment variable) where one is
    to blame.
    """


class SettingError(ValueError):
    """A check across a settings model's sections that blames one setting, ``section.field``
    (``loc``): the command line names that setting, its flag and its variable, as for an
    error pydantic places itself."""

    def __init__(self, section: str, field: str, message: str) -> None:
        super().__init__(message)
        self.loc = (section, field)
