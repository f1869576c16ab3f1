"""The TorchTPU backend where no TPU is: what this machine can check of it (docs/tpu.md lists what waits for a TPU).

Every cell on it is refused in the parent with its reason; the Lightning accelerator and precision plugins that it
hands the Trainer run here on the CPU device (the plumbing, not the TPU); torch.compile gets TorchTPU's compiler.
"""

from __future__ import annotations

from importlib.util import find_spec
from types import SimpleNamespace

import pytest
import torch

from bench.plan import backends
from bench.run import adapters
from tests.conftest import bench_cli, bench_env


def test_a_dry_run_says_why_each_cell_cannot_run(tmp_path, mnist_dir, session_cache):
    # bench list names the backend: tests/test_suite.py
    env = bench_env(mnist_dir, session_cache)
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", "tpu", "--device", "torchtpu", "--dry-run", "--results-dir", str(results)], env)
    assert out.returncode == 0, out.stderr
    cells = [line for line in out.stdout.splitlines() if "/torchtpux1/" in line]
    # the tpu suite's 4 workloads × 3 precisions × 3 repeats, each refused up front with the fix: in the TorchTPU
    # environment (make setup-torchtpu), torch_tpu is there and finds no chip
    why = "no TPU chip on this machine's PCI bus" if find_spec("torch_tpu") else "torch_tpu is not installed"
    assert len(cells) == 36 and all(f"[unsupported here: {why}" in line for line in cells), out.stdout
    assert all("docs/tpu.md" in line for line in cells)
    assert not results.exists()


@pytest.mark.skipif(
    find_spec("torch_tpu") is not None,
    reason="in the TorchTPU environment off a TPU, a first backward waits ~10 min on libtpu (docs/tpu.md)",
)
@pytest.mark.parametrize("name", ["fp32", "bf16-mixed", "bf16-true"])
def test_the_lightning_accelerator_and_precision_plugins_train_in_the_precision_asked(name, mnist_dir, cache):
    import pytorch_lightning as pl

    from bench.backends import torchtpu_lightning
    from bench.plan.precision import Probe
    from bench.run import data
    from bench.workloads.lightning_convnet import LitConvNet

    x, y = data.tensors("train", mnist_dir, limit=96)
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    module = LitConvNet(lr=0.5)
    probe = Probe(module.model.cn1)
    args = torchtpu_lightning.trainer_args(name, torch.device("cpu"))
    trainer = pl.Trainer(**args, devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    assert trainer.global_step == 3
    assert probe.effective() == name


def test_compiled_modes_take_torchtpus_compiler_and_its_batches_keep_one_shape():
    tpu, cpu = (SimpleNamespace(backend=name, mode="compile") for name in ("torchtpu", "cpu"))
    assert adapters._compile_args(tpu) == {"backend": "tpu", "dynamic": False}
    assert adapters._compile_args(cpu) == {"mode": "default", "dynamic": False}
    assert adapters.drop_last(tpu) and not adapters.drop_last(cpu)
    assert backends.get("torchtpu").compiler == "tpu" and backends.get("xla").compiler is None


def _stub_torch_tpu(site) -> None:
    """A torch_tpu that behaves as the 0.2.0 wheel's loader does, recording its calls: torch calls ``load`` as it is
    imported (its "torch.backends" entry point) unless TORCH_DEVICE_BACKEND_AUTOLOAD is "0", and ``import torch_tpu``
    calls it too when the variable was not "0". On a TPU, load() initialises the device. It sees no chip."""
    package = site / "torch_tpu"
    (package / "_internal" / "utils").mkdir(parents=True)
    (package / "__init__.py").write_text("from torch_tpu import _loader as _  # noqa: F401\n")
    (package / "_loader.py").write_text(
        "import os\n"
        "_OLD = os.getenv('TORCH_DEVICE_BACKEND_AUTOLOAD', '1')\n"
        "def load():\n"
        "    with open(os.environ['STUB_CALLS'], 'a') as f:\n"
        "        f.write(f'load in {os.getpid()}\\n')\n"
        "if _OLD == '1':\n"
        "    load()\n"
    )
    for init in (package / "_internal", package / "_internal" / "utils"):
        (init / "__init__.py").write_text("")
    (package / "_internal" / "utils" / "hardware.py").write_text(
        "def get_tpu_device_count():\n    return 0\n\ndef get_tpu_device_name():\n    return 'TPU stub'\n"
    )
    meta = site / "torch_tpu-0.2.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torch-tpu\nVersion: 0.2.0\n")
    (meta / "entry_points.txt").write_text("[torch.backends]\ntorch_tpu = torch_tpu._loader:load\n")


@pytest.mark.slow  # a bench run end to end, in seconds
@pytest.mark.skipif(find_spec("torch_tpu") is not None, reason="the real torch_tpu is installed here")
def test_the_parent_never_loads_torchtpus_device_and_its_workers_may(tmp_path, mnist_dir, session_cache):
    """`bench run --device torchtpu` counts chips and writes its records in a parent that loads no device backend
    (bench.run.process.hold_device_backends): on a TPU, TorchTPU's loader would open the chips every cell's worker
    needs. The worker gets the user's setting back."""
    import subprocess
    import sys

    from bench.run import launchers, process

    site, calls = tmp_path / "site", tmp_path / "calls.txt"
    _stub_torch_tpu(site)
    env = {**bench_env(mnist_dir, session_cache), "PYTHONPATH": str(site), "STUB_CALLS": str(calls)}
    env.pop(process.AUTOLOAD, None)
    # the stub is what torch loads in any other process: `import torch` calls its loader
    subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True, cwd=tmp_path)
    assert calls.read_text().startswith("load in "), "the stub was not loaded: the test would prove nothing"
    calls.unlink()
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", "xla-smoke", "--device", "torchtpu", "--results-dir", str(results)], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no TPU chip on this machine's PCI bus" in out.stdout  # the parent asked the stub's hardware
    assert not calls.exists(), calls.read_text()  # and never loaded its device
    # a worker's environment: the user's own autoload setting, whatever the parent held
    for users in (None, "1", "0"):
        held = process._users_autoload
        try:
            process._users_autoload = (users,)
            child = launchers.worker_env({process.AUTOLOAD: "0", "PATH": "/bin"})
        finally:
            process._users_autoload = held
        assert child.get(process.AUTOLOAD) == users and child["PATH"] == "/bin"
