"""Shared fixtures: real MNIST (BENCH_DATA_DIR, or the harness's own lookup) and an isolated cache folder."""

from __future__ import annotations

import contextlib
import http.server
import os

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # make test's processes (pytest-xdist) share the cores: OpenMP threads spinning on an oversubscribed core slow
    # compiled CPU kernels tenfold. Set before torch starts its thread pool; workers' subprocesses inherit it.
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import backends
from bench.plan import suite
from bench.run import data

ROOT = Path(__file__).resolve().parent.parent


def expand(name: str, settings: dict) -> list:
    """A suite's cells on this machine, as bench run expands them."""
    return suite.expand(name, settings, *backends.machine(settings["backend"]))


# The files that take longest, longest first (make test's durations): make test hands whole files to its processes
# in collection order (--dist loadfile --no-loadscope-reorder), and the longest first finish together.
LONGEST_FIRST = ("test_modes.py", "test_runner.py", "test_micro.py", "test_distributed.py", "test_fastai.py",
                 "test_sweep.py", "test_schedulers.py", "test_hostile.py", "test_hostlock.py", "test_schema.py",
                 "test_host_reads.py", "test_report.py")  # fmt: skip


def pytest_collection_modifyitems(items: list) -> None:
    # xdist hands a process its next file once two of its tests are left: the slow tests go first in their file, so
    # that what is left then is short, not a minute of training that the other process could have shared.
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), item.get_closest_marker("slow") is None))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files; CI points BENCH_DATA_DIR at a local copy."""
    return data.locate(os.environ.get("BENCH_DATA_DIR"))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """Derived data (tensors, PNG folders) of the test session, shared by make test's processes: built once."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "bench-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def compile_cache(request, tmp_path_factory) -> Iterator[Path]:
    """One inductor cache for the tests (workers inherit it), kept from one make test to the next in pytest's own
    cache folder: a graph compiled once is not compiled again, where each benchmark cell would get a cold cache of
    its own (bench.run.worker). Inductor keys its entries by graph, config and torch version; `make clean` empties
    it."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    path = cache.mkdir("inductor") if cache else tmp_path_factory.mktemp("inductor")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(path))
        yield path


# A contention section of a repeat measured on a quiet host (bench.trackers.contention), for records built by hand:
# a record without one was not measured, and the report compares only quiet repeats.
QUIET = {"status": "ok", "verdict": "quiet", "why": None, "span_s": 5.0, "segments": 2, "cores": 2,
         "measures": {"run_queue": {"value": 0.6, "resolution": 0.0}, "others_cpu": {"value": 0.6, "resolution": 0.45},
                      "steal": {"value": 0.0, "resolution": 0.45}}}  # fmt: skip


@pytest.fixture(autouse=True)
def host_locks(tmp_path_factory, session_cache, monkeypatch) -> Path:
    """Each test's bench runs take the one-run-per-host lock (bench.run.hostlock) in a folder of their own: the tests
    that run in parallel would otherwise wait for each other (tests/test_hostlock.py shares one on purpose). What
    bench caches goes to the session's folder, never to the user's."""
    path = tmp_path_factory.mktemp("locks")
    monkeypatch.setenv("BENCH_LOCK_DIR", str(path))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(session_cache))
    return path


@pytest.fixture
def cache(session_cache, monkeypatch) -> Path:
    """Derived data goes to a folder of the test session, never to the user's cache."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(session_cache))
    return session_cache


class Loopback(http.server.BaseHTTPRequestHandler):
    """A quiet request handler for the tests' loopback servers; ``do_GET`` answers with ``reply``."""

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def loopback(handler: type[Loopback]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for the duration of the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bench_env(mnist_dir: Path, cache_dir: Path) -> dict[str, str]:
    env = {**os.environ, "BENCH_DATA_DIR": str(mnist_dir), "BENCH_CACHE_DIR": str(cache_dir)}
    env["PYTHONPATH"] = str(ROOT)
    return env


def bench_cli(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    """Run the real `bench` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True, **kw)


@pytest.fixture
def offline_env(mnist_dir, session_cache, tmp_path) -> dict[str, str]:
    """bench_env with an empty torch hub cache and a weights address that refuses connections: offline, whatever
    the machine (the fastai workload's pretrained weights)."""
    return {
        **bench_env(mnist_dir, session_cache),
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "BENCH_WEIGHTS_URL": "http://127.0.0.1:1/resnet18-f37072fd.pth",
    }
