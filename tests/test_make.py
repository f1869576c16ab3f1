"""The Makefile's own logic: each environment's lock and XLA pin, and Docker's refusals naming their fix."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True
    )


def test_the_xla_environment_is_remade_when_its_pin_changes(tmp_path):
    pin = tmp_path / ".xla-pin"  # a prerequisite of the environment's .installed stamp
    assert make(str(pin), f"XLA_VENV={tmp_path}").returncode == 0
    assert pin.read_text() == "torch-xla==2.9.0\n"
    stamp = pin.stat().st_mtime_ns
    assert make(str(pin), f"XLA_VENV={tmp_path}").returncode == 0
    assert pin.stat().st_mtime_ns == stamp  # the same pin: the environment stays as it is
    assert make(str(pin), f"XLA_VENV={tmp_path}", "XLA_PIN=torch-xla[tpu]==2.9.0").returncode == 0
    assert pin.read_text() == "torch-xla[tpu]==2.9.0\n"
    stamp = pin.stat().st_mtime_ns
    # no pin given (make bench-micro XLA=1, make test-xla): the one it was made with stays, libtpu with it
    assert make(str(pin), f"XLA_VENV={tmp_path}").returncode == 0
    assert pin.read_text() == "torch-xla[tpu]==2.9.0\n" and pin.stat().st_mtime_ns == stamp


def test_an_environment_made_by_a_python_older_than_3_11_is_refused_naming_the_fix(tmp_path):
    """A TPU VM's python3 is 3.10: a venv it made once would otherwise be reused by every later `make setup-*`."""
    old = tmp_path / "venv"
    (old / "bin").mkdir(parents=True)
    python = old / "bin" / "python"
    python.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.10.12";; *) exit 1;; esac\n')
    python.chmod(0o755)
    for target, var in (("setup", "VENV"), ("setup-xla", "XLA_VENV"), ("setup-torchtpu", "TORCHTPU_VENV")):
        out = make(f"{old}/.installed", f"{var}={old}")
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"make {target}: {old} was made by Python 3.10.12" in out.stdout
        assert f"make {target} PYTHON=python3.11 RECREATE=1" in out.stdout
        assert not (old / ".installed").exists()
    # RECREATE=1 makes it again with PYTHON (here one that fails at once: nothing is installed)
    out = make(f"{old}/.installed", f"VENV={old}", "RECREATE=1", "PYTHON=false")
    assert out.returncode != 0 and not python.exists()


@pytest.mark.slow  # seconds of make's own start-up before the suite's run (make test-fast leaves it out)
def test_an_interrupted_docker_run_gives_the_results_back(tmp_path):
    """make bench-tpu runs the container as root; Ctrl-C (or SIGTERM) during the suite still gives the results folder
    back to the user (the chown), as the end of a run does."""
    import os
    import signal
    import time

    log = tmp_path / "docker.log"
    docker = tmp_path / "docker"  # records each call; the suite's run waits to be interrupted
    docker.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *"run --suite"*) exec sleep 60;; esac\n')
    docker.chmod(0o755)
    args = ["make", "-s", "--no-print-directory", "-C", str(ROOT), "bench-tpu-stack", "TPU_STACK=xla",
            f"DOCKER={docker}", f"RESULTS={tmp_path / 'results'}", f"HOST_LOCKS={tmp_path / 'locks'}"]  # fmt: skip
    # Ctrl-C's default action: a shell started in the background without job control (CI's, under nohup) passes
    # SIGINT on ignored, and a signal ignored on entry cannot be trapped
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 60
    while not (log.exists() and "run --suite" in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches make's whole process group
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    calls = log.read_text().splitlines()
    assert "--entrypoint chown" in calls[-1] and f"{tmp_path / 'results'}" in calls[-1], calls


def test_docker_check_names_the_fix(tmp_path):
    denied = tmp_path / "docker"
    denied.write_text(
        "#!/bin/sh\necho 'permission denied while trying to connect to the Docker daemon socket' >&2\nexit 1\n"
    )
    denied.chmod(0o755)
    out = make("docker-check", f"DOCKER={denied}")
    assert out.returncode == 2 and "sudo usermod -aG docker" in out.stdout and "log in again" in out.stdout
    out = make("docker-check", "DOCKER=false")
    assert out.returncode == 2 and "no Docker engine answers" in out.stdout
    no_buildx = tmp_path / "docker25"  # an engine that answers, a client of Docker 25 without the buildx plugin
    no_buildx.write_text('#!/bin/sh\ncase "$1" in info) exit 0;; version) echo 25.0.3;; *) exit 1;; esac\n')
    no_buildx.chmod(0o755)
    out = make("docker-check", f"DOCKER={no_buildx}")
    assert out.returncode == 2 and "buildx plugin" in out.stdout and "docker-buildx-plugin" in out.stdout, out.stdout


def test_each_environment_is_compared_with_the_lock_it_was_made_from():
    from bench.run import env

    assert env.lock_file({"torch": "2.14.1", "torch-xla": None}).name == "constraints.txt"
    assert env.lock_file({"torch": "2.9.0", "torch-xla": "2.9.0"}).name == "constraints-xla.txt"
    makefile = (ROOT / "Makefile").read_text()
    torch = re.search(r"^TORCH \?= (\S+)$", makefile, re.M).group(1)
    pins = {lock: dict(line.split("==") for line in (ROOT / lock).read_text().splitlines() if "==" in line)
            for lock in ("constraints.txt", "constraints-xla.txt")}  # fmt: skip
    assert pins["constraints.txt"]["torch"] == torch and "torch-xla" not in pins["constraints.txt"]
    assert pins["constraints-xla.txt"]["torch"] == pins["constraints-xla.txt"]["torch-xla"] == "2.9.0"
    assert env.lock_differences({"torch": "2.9.0", "torch-xla": "2.9.0"}) == {}


def test_every_file_the_dockerfile_copies_is_in_the_build_context():
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    copies = re.findall(r"^COPY (.+) \S+$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    sources = [src.rstrip("/") for line in copies for src in line.split()]
    assert sources and not [src for src in sources if src not in allowed], (sources, allowed)
