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


def cannot_write(what: str, error: BaseException, then: str = "free space or fix the folder") -> GenieError:
    """A write the disk or the folder refused (full, read-only, vanished) as the one line the user sees: the
    file, the cause and what to do. An OSError's cause is its strerror; torch's zip writer raises a
    RuntimeError, whose first line is all it says."""
    if isinstance(error, OSError) and error.strerror:
        cause = error.strerror
    else:
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
    return GenieError(f"cannot write {what}: {cause}; {then}")
