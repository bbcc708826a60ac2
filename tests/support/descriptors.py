"""Which SQLite files this process holds open, for the checks that a test leaves none behind.

Read from ``/proc/self/fd``, so only on Linux (CI's platform); elsewhere nothing is
ever reported. Each pytest-xdist worker is a process of its own and sees only its
own descriptors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_DESCRIPTORS = Path("/proc/self/fd")
#: How the kernel names the target of a descriptor whose file has been unlinked.
DELETED = " (deleted)"
#: A database file and the files SQLite keeps beside it.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def sqlite_descriptors() -> dict[int, str]:
    """Every descriptor of this process open on a ``*.db`` file (or its WAL, index or journal), and its target."""
    if not _DESCRIPTORS.is_dir():
        return {}
    held = {}
    for entry in os.listdir(_DESCRIPTORS):
        try:
            target = os.readlink(_DESCRIPTORS / entry)
        except OSError:  # closed since the listing, like the listing's own descriptor
            continue
        if any(target.removesuffix(DELETED).endswith(f".db{suffix}") for suffix in SQLITE_SUFFIXES):
            held[int(entry)] = target
    return held


def descriptors_of(database: Path, held: Iterable[str]) -> list[str]:
    """The targets in ``held`` that are ``database`` or a file SQLite keeps beside it, deleted or not."""
    names = {f"{database}{suffix}" for suffix in SQLITE_SUFFIXES}
    return sorted(target for target in held if target.removesuffix(DELETED) in names)
