"""One bench run per host: beside the run folder's lock (bench.run.runlock), an advisory lock per host (pyperf's wish
list holds one). Two runs on one host slow each other, and their cells cannot tell a neighbour that is bench from any
other.

Every run holds ``host.lock`` in a folder all users (and containers, through the Makefile's mount) share:
exclusively, or, where a run's cells are CUDA cells on the GPUs CUDA_VISIBLE_DEVICES names, shared, with an
exclusive lock per GPU; runs on different GPUs then go on side by side and each sees the other's CPU time as a
neighbour's. Each run also keeps a note of itself, ``run-<pid>.json``, locked while it lives (so that a dead run's note
reads as gone, in any pid namespace), which a refusal names and which tells the cells of every run that one shares
the host (``--share-host``): then none of them is quiet.
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
from bench.text import shown

LOCK_DIR_VAR = "BENCH_LOCK_DIR"
LOCK_DIR = "/tmp/bench-locks"
SHARED_VAR = "BENCH_SHARED_HOST"  # set for the cells of a run that shares the host: none of them is quiet
RUN_PID_VAR = "BENCH_RUN_PID"  # the pid in the note of the run a cell belongs to: its own run is no neighbour


class HostLocked(ValueError):
    """Another ``bench run`` holds the host (or the GPUs asked for); the message names it and the ways out."""


def lock_dir() -> Path:
    path = Path(os.environ.get(LOCK_DIR_VAR) or LOCK_DIR)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.chmod(0o1777)  # every user's runs lock here; each one's notes stay its own (sticky)
    return path


def gpu_keys(backends_used: set[str]) -> list[str]:
    """The GPUs a run of cells on ``backends_used`` holds alone: those CUDA_VISIBLE_DEVICES names, where every cell
    is a CUDA cell; [] where the run holds the whole host."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if backends_used != {"cuda"} or not visible:
        return []
    return ["gpu-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in d)[:64] for d in visible]


def _lock_file(path: Path) -> int:
    """A descriptor to flock ``path`` with (read-only where another user's run made it: flock needs no write)."""
    try:
        fd = files.open_own(path, os.O_RDWR | os.O_CREAT, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        return fd
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def runs_here(folder: Path | None = None) -> list[dict]:
    """The notes of the bench runs alive on this host (a note whose lock is free is a dead run's)."""
    out = []
    folder = folder or lock_dir()
    for path in sorted(folder.glob("run-*.json")):
        with contextlib.suppress(OSError, ValueError):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    continue  # nobody holds it: its run is gone
                except BlockingIOError:
                    note = json.loads(os.read(fd, 4096))
            finally:
                os.close(fd)
            if isinstance(note, dict):
                out.append(note)
    return out


def shared() -> str | None:
    """Why the cells running now cannot call the host quiet: this run shares it, or another run shares it with
    this one (``--share-host``); None when neither."""
    if os.environ.get(SHARED_VAR):
        return "this run shares the host with another bench run (--share-host)"
    with contextlib.suppress(OSError):
        sharing = [n for n in runs_here() if n.get("shared") and n.get("pid") != os.environ.get(RUN_PID_VAR)]
        if sharing:
            return f"{_name(sharing[0], full=False)} shares the host (--share-host)"
    return None


def _name(note: dict, full: bool = True) -> str:
    """A run as its note names it, escaped (a note is in a folder every user may write in)."""
    name = f"bench run {shown(str(note.get('run_id'))[:80])} (pid {shown(str(note.get('pid'))[:20])}"
    if not full:
        return name + ")"
    return name + f", {shown(str(note.get('holds'))[:80])}, since {shown(str(note.get('started_at'))[:40])})"


def _names(notes: list[dict]) -> str:
    return "; ".join(_name(n) for n in notes) or "another bench run"


@contextlib.contextmanager
def hold_host(
    run_id: str, gpus: list[str], wait: bool = False, share: bool = False
) -> Iterator[tuple[bool, str | None]]:
    """Hold this host (or the GPUs ``gpus`` names) for the block, which gets whether it waited, and None or why its
    cells cannot be quiet (it shares the host: ``share``, when another run holds it). Held elsewhere and neither
    ``wait`` nor ``share``: ``HostLocked`` at once."""
    folder = lock_dir()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    fds = []
    sharing, waited = None, False
    try:
        wanted = [(folder / "host.lock", fcntl.LOCK_SH if gpus else fcntl.LOCK_EX)]
        wanted += [(folder / f"{key}.lock", fcntl.LOCK_EX) for key in gpus]
        for path, mode in wanted:
            fds.append(fd := _lock_file(path))
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                notes = runs_here(folder)
                if any(n.get("run_id") == run_id for n in notes):
                    break  # another node of this same run, on this host (a run of several nodes tried on one)
                holders = _names([n for n in notes if not n.get("shared")])
                what = f"GPU {path.stem[4:]}" if path.stem.startswith("gpu-") else "this host"
                if share:
                    sharing = f"this run shares {what} with {holders} (--share-host)"
                    print(f"warning: {sharing}: no cell of either run will be called quiet", flush=True)
                    break
                if not wait:
                    raise HostLocked(
                        f"{what} is in use by {holders}: two runs on one host slow each other. Let it finish, add "
                        "--wait to run after it, or --share-host to run beside it (no cell of either is then quiet)"
                    ) from None
                print(f"waiting for {holders} to release {what} (--wait)", flush=True)
                fcntl.flock(fd, mode)
                waited = True
        note = folder / f"run-{os.getpid()}.json"
        fds.append(fd := files.open_own(note, os.O_RDWR | os.O_CREAT))
        fcntl.flock(fd, fcntl.LOCK_SH)  # while it is held, the note is alive (runs_here)
        os.ftruncate(fd, 0)
        holds = ", ".join(k.replace("gpu-", "GPU ") for k in gpus) or "the host"
        os.pwrite(fd, json.dumps({"pid": str(os.getpid()), "run_id": run_id, "holds": holds, "started_at": started,
                                  "shared": sharing is not None}).encode(), 0)  # fmt: skip
        previous = os.environ.get(SHARED_VAR), os.environ.get(RUN_PID_VAR)
        os.environ[RUN_PID_VAR] = str(os.getpid())  # the cells' own run is not a neighbour (shared)
        if sharing:
            os.environ[SHARED_VAR] = "1"
        try:
            yield waited, sharing
        finally:
            for var, value in zip((SHARED_VAR, RUN_PID_VAR), previous):
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
            with contextlib.suppress(OSError):
                note.unlink()  # its own note
    finally:
        for fd in fds:
            os.close(fd)
