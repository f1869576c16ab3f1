"""The Makefile's own logic: each environment's lock and XLA pin, and Docker's refusals naming their fix."""

from __future__ import annotations

import re
import subprocess

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
