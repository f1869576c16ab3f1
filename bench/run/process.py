"""How the harness's processes start and end: the parent (``bench``) loads no device backend, a worker dies with its
parent, and a finished process leaves without tearing the interpreter down."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

# torch calls the loader of every installed out-of-tree device backend (entry points "torch.backends") as it is
# imported, unless this is "0". TorchTPU's loader initialises its device there, and so does a plain `import
# torch_tpu` (its _loader runs load() when the variable was not "0"): on a TPU VM, the chips a cell's worker needs.
AUTOLOAD = "TORCH_DEVICE_BACKEND_AUTOLOAD"
_users_autoload: tuple[str | None] | None = None  # the user's value (None: unset), once held


def hold_device_backends() -> None:
    """Before torch is imported in ``bench`` (the parent of every cell): no device backend loads or initialises in
    it; TorchTPU's chips are counted without its runtime (bench.backends.torchtpu). A worker gets the user's own
    setting back (``device_backends``). Too late once torch is imported (a test calling bench in-process)."""
    global _users_autoload
    if _users_autoload is None and "torch" not in sys.modules:
        _users_autoload = (os.environ.get(AUTOLOAD),)
        os.environ[AUTOLOAD] = "0"


def device_backends(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a cell's worker: torch's device-backend autoload as the user had it before ``bench`` held it."""
    if _users_autoload is None:
        return dict(env)
    (value,) = _users_autoload
    out = {k: v for k, v in env.items() if k != AUTOLOAD}
    return out if value is None else {**out, AUTOLOAD: value}


def die_with_parent() -> None:
    """The kernel kills this process when its parent dies, even by SIGKILL (PR_SET_PDEATHSIG): a cell's worker when
    `bench run` dies, so that it never lives on and skews the next run; a torchrun rank when its agent dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def same_code(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a child ``python -m bench.…`` that must run this process's harness: never a ``bench`` package in
    the folder the child starts in (PYTHONSAFEPATH, Python's -P). Where this process found bench in the folder it
    started in (a source checkout run as ``python -m bench``), the child is pointed at that folder."""
    root = os.path.realpath(Path(__file__).parent.parent)
    started_in = os.path.realpath(sys.path[0] or os.getcwd()) if sys.path else None
    if root != started_in:  # installed (or editable): the same interpreter finds the same harness
        return {**env, "PYTHONSAFEPATH": "1"}
    path = [root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {**env, "PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join(path)}


def leave(code: int | str | None) -> None:
    """Exit with ``code`` (as ``sys.exit``) once everything is written, without tearing the interpreter down: freeing
    torch's and dynamo's modules costs ~0.7 s per cell (docs/methodology.md, "What a cell costs") and measures
    nothing. Exit handlers still run (DataLoader workers, logging); while a thread that is not a daemon is alive
    (inductor's compile pool), the interpreter's own exit ends it, in its order."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    if isinstance(code, str):  # as sys.exit("reason"): printed, exit status 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)


def run(main) -> None:
    """``leave`` with what ``main()`` returns or exits with: a command's entry point."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    leave(code)
