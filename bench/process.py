"""How the harness's processes end: a worker dies with its parent, and a finished process leaves without tearing
the interpreter down."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading


def die_with_parent() -> None:
    """The kernel kills this process when its parent dies, even by SIGKILL (PR_SET_PDEATHSIG): a cell's worker when
    `bench run` dies, so that it never lives on and skews the next run; a torchrun rank when its agent dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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
