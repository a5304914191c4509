"""One exception type for bad input, so every command can answer it with one clear line."""

from __future__ import annotations


class GenieError(Exception):
    """Bad input from the user (config, data, checkpoint, CLI value).

    The message is shown as a single line; it names the thing that is wrong and what was expected.
    """
