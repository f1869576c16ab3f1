"""The schedulers' paths: a Kubeflow TrainJob validated against the API's models, a real single-host SLURM job."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from bench.cluster import k8s, slurm
from tests.conftest import ROOT, bench_cli, bench_env
from tests.test_runner import run_records


def test_the_trainjob_validates_against_the_kubeflow_trainer_api(tmp_path, mnist_dir, session_cache):
    args = ["k8s", "--name", "bench-gpu", "--nodes", "2", "--gpus-per-node", "8", "--image", "reg/bench-cuda:1"]
    args += ["--out", str(tmp_path / "job.yaml"), "--", "--suite", "gpu", "--devices", "8"]
    out = bench_cli(args, bench_env(mnist_dir, session_cache))
    assert out.returncode == 0, out.stderr
    job = yaml.safe_load((tmp_path / "job.yaml").read_text())
    k8s.validate(job)
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert trainer["command"][:2] == ["bench", "run"] and "--nodes" in trainer["command"]
    bad = yaml.safe_load((tmp_path / "job.yaml").read_text())
    bad["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(ValueError, match="numNodes"):
        k8s.validate(bad)
    bad["spec"]["trainer"].update(numNodes=2, gpus=8)
    with pytest.raises(ValueError, match=r"fields the Kubeflow Trainer API does not have: spec.trainer.gpus"):
        k8s.validate(bad)


def test_the_slurm_script_runs_bench_on_every_task():
    script = slurm.render(["--suite", "smoke"], nodes=2, sbatch=["--gpus-per-node=8"], bench="bench")
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in script and "#SBATCH --gpus-per-node=8\n" in script
    assert "srun --kill-on-bad-exit=0 bench run --suite smoke --nodes 2\n" in script
    assert "--nodes 1\n" in slurm.render(["--suite", "smoke", "--nodes", "1"], nodes=2, bench="bench")


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    """A real SLURM on this host (scripts/slurm-local.sh: Debian's slurm-wlm and munge); yields the environment
    that points sbatch at it."""
    if not all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged", "mungekey")):
        pytest.skip("SLURM is not installed here (apt-get install slurm-wlm munge; CI installs it)")
    if os.geteuid() != 0:
        pytest.skip("the single-host SLURM of the tests runs its daemons as root")
    d = tmp_path_factory.mktemp("slurm")
    try:
        subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "start", str(d)], check=True, timeout=120)
        yield {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    finally:
        subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "stop", str(d)], check=False)


@pytest.mark.slow
def test_the_smoke_suite_runs_as_a_two_task_slurm_job(tmp_path, slurm_cluster, mnist_dir, session_cache):
    env = {**bench_env(mnist_dir, session_cache), "SLURM_CONF": slurm_cluster["SLURM_CONF"]}
    results = tmp_path / "results"
    # Two tasks on this one host stand in for two nodes; the smoke suite's plain ConvNet across both (CI runs the
    # whole smoke suite in the CPU image as such a job).
    args = ["slurm", "--ntasks-per-node", "2", "--wait", "--", "--suite", "smoke", "--results-dir", str(results)]
    args += ["--nodes", "2", "--workload", "torch-convnet", "--mode", "eager", "--input", "loader", "--epochs", "1"]
    args += ["--limit-train", "1280"]  # 10 steady steps a rank: the job's path, in seconds
    args += ["--precision", "fp32,fp16-mixed"]  # one cell trains, one is refused: the job goes on past it
    out = bench_cli(args, env, cwd=tmp_path, timeout=900)
    log = "".join(p.read_text() for p in results.glob("slurm-*.out"))
    assert out.returncode == 0, out.stdout + out.stderr + log
    recs = {r["cell_id"]: r for r in run_records(results)}
    assert {c: r["status"] for c, r in recs.items()} == {
        "torch-convnet/2xcpux1/fp32": "ok",
        "torch-convnet/2xcpux1/fp16-mixed": "unsupported",
    }
    two = recs["torch-convnet/2xcpux1/fp32"]["distributed"]
    assert (two["world_size"], two["nodes"]) == (2, 2)
    assert "node 1 of 2 (SLURM)" in log
