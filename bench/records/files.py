"""Writing under a results folder: files replaced whole, folders of bench's own, never through a symbolic link, and
never over what bench did not write.

A results folder may be shared, or copied from elsewhere: a link planted in it (a cell's folder, result.json,
bench.sbatch) must not turn one of bench's writes into a write of some other file. records.jsonl (bench.records)
and the run's lock (bench.run.runlock) are opened with O_NOFOLLOW for the same reason. An output that bench replaces (a
report's folder, a comparison's, a cell's, a job file) is replaced only where it is bench's own: a folder that
lists what bench wrote in it (``MARK``), a file that starts with bench's header; anything else there is the
user's, and the write stops with one error naming it (``output``, ``own_file``, ``fresh_folder``)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.text import warn

MARK = ".bench-output"  # in each output folder bench writes: the names of the files it wrote there


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor of ``path`` for writing, opened without following a link (O_NOFOLLOW), that is a regular file
    with one name: a hard link to a file elsewhere (which O_NOFOLLOW cannot see) would turn bench's write, truncation
    or lock into a change of that file. Otherwise OSError (ELOOP) or ValueError naming the way out."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"one of {st.st_nlink} names of a file"
        raise ValueError(f"{path} is {what}: bench writes only a file of its own there; move it away")
    return fd


def replace(path: Path, text: str | bytes) -> None:
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
def _staged(path: Path, text: str | bytes) -> Iterator[str]:
    """A new file beside ``path`` holding ``text``, removed afterwards unless it was renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # as readable as the files bench opens itself (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
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


def fresh_folder(path: Path, own: str) -> Path:
    """An empty ``path``: what an interrupted run left there is removed first (a link itself, never what it points
    to), where it is bench's: empty, or holding the file ``own`` that bench writes first (a cell's cell.json). A
    folder of anyone else's stops it with ValueError."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir() and any(path.iterdir()) and not (path / own).is_file():
        raise ValueError(f"{path} holds files bench did not write (no {own}): move them away, then run again")
    elif path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file bench did not write where it makes a folder: move it away")
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def _theirs(out: Path, legacy: tuple[str, ...]) -> list[str]:
    """What in the folder ``out`` bench did not write: every entry unless ``MARK`` lists it (or, in a folder written
    before the mark, its name matches one of ``legacy``, the names the writer gives its files)."""
    mark = out / MARK
    try:
        mine = set(json.loads(mark.read_text())) if mark.is_file() and not mark.is_symlink() else None
    except (OSError, ValueError, TypeError):
        mine = None
    found = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if name == MARK and mine is not None:
            continue
        ours = name in mine if mine is not None else any(fnmatch.fnmatchcase(name, g) for g in legacy)
        if not ours or entry.is_symlink() or not entry.is_file():
            found.append(name)
    return found


@contextlib.contextmanager
def output(out: Path, legacy: tuple[str, ...] = ()) -> Iterator[Path]:
    """A folder to write ``out``'s files into, put in place of ``out`` whole when the block ends without an error: a
    reader never sees half of it, and an output that fails leaves the last one. ``out`` is new or bench's own (every
    file in it listed in its ``MARK``, or, written before the mark, named as ``legacy`` names the writer's files);
    anything else in it stops the write before it starts, naming what is in the way: bench never removes a file it
    did not write."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out} is not a folder: move it away to write there")
    if out.exists() and (theirs := _theirs(out, legacy)):
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise ValueError(
            f"{out} holds what bench did not write ({shown}): bench replaces only a folder of its own; name "
            "another folder, or move those away"
        )
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        tmp.chmod(0o755)
        yield tmp
        (tmp / MARK).write_text(json.dumps(sorted(p.name for p in tmp.iterdir())))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f"{tmp.name}.old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def own_file(path: Path, text: str, header: str) -> None:
    """``text`` (which holds ``header`` in its first two lines) into ``path`` as ``replace`` writes it, where nothing
    is there or what is there is bench's own (``header`` in its first two lines); a file or link of anyone else's
    stops it with ValueError."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{path} is a link or not a file: bench writes over no one's; name another file")
    if path.exists():
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace").splitlines()[:2]
        if not any(header in line for line in head):
            raise ValueError(f"{path} exists and bench did not write it: name another file, or move it away")
    replace(path, text)


# ---- Reading what a results folder holds: regular files only, never through a link, capped before parsing -------
MAX_DEPTH = 32  # nesting of any JSON bench reads (a record's is 5, a micro-benchmark run's 4)
MAX_TREE = 32  # folders below a results folder where bench looks for runs (a run's records sit 1 or 2 deep)


def depth_ok(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests no deeper than ``limit``: checked with a stack, not recursion, so that a
    deep value is refused here rather than stopping whatever walks it next with a RecursionError."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            if d >= limit:
                return False
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return True


def read_json(path: Path, cap: int) -> object:
    """The JSON value of the file ``path``, read only where it is a regular file (not a link, a FIFO or a device:
    a link to /dev/zero would never end) of at most ``cap`` bytes, nesting no deeper than ``MAX_DEPTH``. Anything
    else is ValueError naming the file and what is wrong with it, never an exception of the parser's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror} (a link is not followed)") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path}: not a regular file")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"{path}: over {cap:,} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, nested past the parser's own limit
        raise ValueError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not depth_ok(value):
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return value


def find(root: Path, match) -> list[Path]:
    """What under ``root`` is not a folder and has a name ``match(name)`` accepts, sorted, found without recursion
    and without following a link, at most ``MAX_TREE`` folders deep (a deeper tree is cut there, with a warning): a
    folder tree of any depth never stops a reader."""
    found, stack = [], [(Path(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 < MAX_TREE:
                    stack.append((Path(entry.path), depth + 1))
                else:
                    warn(f"{entry.path}: not searched, over {MAX_TREE} folders deep")
            elif match(entry.name):  # a link or a FIFO too: its reader refuses it, with a warning
                found.append(Path(entry.path))
    return sorted(found)
