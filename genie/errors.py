"""One exception type for bad input, so every command can answer it with one clear line."""

from __future__ import annotations


class GenieError(Exception):
    """Bad input from the user (config, data, checkpoint, CLI value).

    The message is shown as a single line; it names the thing that is wrong and what was expected.
    """


class Stopped(GenieError):
    """A run stopped on a signal (SIGTERM, Ctrl-C) after saving its current step; exits 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
