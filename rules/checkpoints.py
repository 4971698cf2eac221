"""What makes a stored checkpoint complete, for the worker that writes it and anything that
copies or reads one."""

from __future__ import annotations

# Written into a checkpoint folder (and, in the store, uploaded) after every other file of it:
# a folder or prefix without it is an interrupted save and is never resumed from.
COMPLETE_MARKER = "embedtune-complete"


def completes_last(key: str) -> tuple[bool, str]:
    """A sort key that puts each checkpoint's marker after the files it vouches for."""
    return (key.rsplit("/", 1)[-1] == COMPLETE_MARKER, key)
