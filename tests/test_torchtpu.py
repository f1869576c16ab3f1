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
