"""Writing under a results folder: files replaced whole, folders of bench's own, never through a symbolic link.

A results folder may be shared, or copied from elsewhere: a link planted in it (a cell's folder, result.json,
bench.sbatch) must not turn one of bench's writes into a write of some other file. records.jsonl (bench.records)
and the run's lock (bench.runlock) are opened with O_NOFOLLOW for the same reason."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def replace(path: Path, text: str) -> None:
    """``text`` into ``path``, whole: written to a new file beside it, then renamed over it, so that a reader never
    sees half of it and a link at ``path`` is replaced, not followed."""
    with _staged(path, text) as tmp:
        os.replace(tmp, path)


def create(path: Path, text: str) -> bool:
    """``text`` into ``path`` unless something is there already (a file, or a link, never followed), whole as
    ``replace`` writes it: of two processes that race, the first one's stays. Returns whether this one was written."""
    with _staged(path, text) as tmp:
        try:
            os.link(tmp, path)  # fails where anything has the name: unlike a rename, it never replaces
        except FileExistsError:
            return False
    return True


@contextlib.contextmanager
def _staged(path: Path, text: str) -> Iterator[str]:
    """A new file beside ``path`` holding ``text``, removed afterwards unless it was renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # as readable as the files bench opens itself (mkstemp makes 0600)
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def folder(path: Path) -> Path:
    """``path`` as a folder bench may write into, made where missing; a link there is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link: bench writes only into folders of its own; remove the link")
    return path


def fresh_folder(path: Path) -> Path:
    """An empty ``path``: what an interrupted run left there is removed first (a link itself, never what it points
    to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path
