"""One writer per run folder: ``bench run`` holds an exclusive lock on ``<run>/run.lock`` while it runs.

Two runs on one run id would recreate each other's live cell folders and record each other's results. The lock is
``fcntl.flock`` on an open file, so the kernel frees it when the holder dies, SIGKILL included; the file says who
holds it (host, pid, start time) for the message the second run gets. Only ``bench run`` takes it (node 0 of a run
of several nodes: the others write under their own ``node<K>`` folders); ``bench report`` reads without it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from bench.records import files

NAME = "run.lock"


class RunLocked(ValueError):
    """The run folder is held by another ``bench run``; the message names it and the ways out."""


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"bench run pid {h['pid']} on {h['host']}, started {h['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another bench run"


@contextlib.contextmanager
def hold(run_dir: Path, host: str, wait: bool = False) -> Iterator[bool]:
    """Hold the run folder's lock for the block, which gets whether it waited for it. Held elsewhere: raise
    ``RunLocked`` at once, or, ``wait``, block until the holder ends (Ctrl-C still stops the wait)."""
    run_dir = Path(run_dir)
    path = files.folder(run_dir) / NAME
    # CLOEXEC: no cell inherits the lock; a link there (symbolic or hard) is an error, not the file it names truncated
    fd = files.open_own(path, os.O_RDWR | os.O_CREAT)
    waited = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise RunLocked(
                    f"run folder {run_dir} is in use by {holder}: let it finish, add --wait to run after it, "
                    "or give this run another --run-id"
                ) from None
            print(f"waiting for {holder} to release {run_dir} (--wait)", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": host, "pid": os.getpid(), "started_at": started}).encode(), 0)
        yield waited
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
