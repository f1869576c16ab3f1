"""Execution modes: eager (the seed), compile, graphs. Parity before speed: with one seed, the first training losses
agree between eager and compile, and between Lightning and the plain loop, within a tolerance per precision."""

from __future__ import annotations

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from bench import backends
from bench.plan import backends as specs
from bench.plan.suite import SuiteError, validate
from bench.plan.workloads import WORKLOADS
from bench.records import schema
from bench.report import aggregate
from bench.run import adapters, launchers, planning
from bench.trackers import compile as compile_tracker
from bench.workloads import convnet, lightning_convnet, plain
from tests.conftest import bench_cli, bench_env, expand
from tests.test_runner import run_records

STEPS = 12  # training losses compared, from the first step on
# Relative tolerance per precision between two ways of running the same step: reordered fp32 sums differ in the last
# bits and grow over steps; reduced precisions round every activation (docs/methodology.md, "Parity").
TOLERANCE = {"fp32": 1e-4, "tf32": 1e-2, "bf16-mixed": 3e-2, "fp16-mixed": 1e-2, "bf16-true": 5e-2}


def cells(**over):
    raw = {"backend": "cpu", "workloads": ["torch-convnet"], "epochs": 1, "limit_train": 640, "limit_test": 1000,
           "warmup_steps": 5, "profile_steps": 4, "tta_target": 0.5, "allocator": "glibc", **over}  # fmt: skip
    return expand("t", validate("t", raw))


def test_the_mode_axis_names_cells_and_keeps_the_seeds_fingerprints():
    eager, compiled, graphs = cells(modes=["eager", "compile", "graphs"])
    assert [c.mode for c in (eager, compiled, graphs)] == ["eager", "compile", "graphs"]
    assert eager.cell_id == "torch-convnet/cpux1/fp32" and compiled.cell_id == "torch-convnet/cpux1/fp32/mode-compile"
    both = cells(modes=["graphs"], inputs=["device"])[0]
    assert both.dirname == "torch-convnet.cpux1.fp32.mode-graphs.input-device.r0"
    # the seed's cells keep the fingerprint they had before modes and loader settings existed
    assert eager.fingerprint == cells(modes=["eager"], pin_memory=False, persistent_workers=True)[0].fingerprint
    assert len({eager.fingerprint, compiled.fingerprint, graphs.fingerprint}) == 3
    assert cells(pin_memory=True)[0].fingerprint != eager.fingerprint
    with pytest.raises(SuiteError, match="modes entry 'jit'; valid: eager, compile, graphs"):
        cells(modes=["jit"])


def test_modes_and_inputs_per_workload():
    over = {"torch-convnet": {"modes": ["eager", "compile"], "inputs": ["loader", "device"]}}
    found = cells(workloads=["torch-convnet", "lightning-convnet"], workload=over)
    assert [(c.workload, c.mode, c.input) for c in found] == [
        ("torch-convnet", "eager", "loader"),
        ("torch-convnet", "eager", "device"),
        ("torch-convnet", "compile", "loader"),
        ("torch-convnet", "compile", "device"),
        ("lightning-convnet", "eager", "loader"),
    ]
    with pytest.raises(SuiteError, match=r"\[workload.torch-convnet\]: modes entry 'fast'; valid: eager"):
        cells(workload={"torch-convnet": {"modes": ["fast"]}})


def test_each_mode_says_where_it_cannot_run():
    graphs = cells(modes=["graphs"])[0]
    assert "CUDA only" in planning.unsupported_reason(graphs)
    fp16 = cells(modes=["graphs"], backend="cuda", precisions=["fp16-mixed"])[0]
    assert "GradScaler" in adapters.unsupported(fp16, WORKLOADS["lightning-convnet"])
    xla = cells(modes=["compile"], backend="xla")[0]
    assert "already traces and compiles" in adapters.unsupported(xla, WORKLOADS["lightning-convnet"])
    assert planning.unsupported_reason(cells(modes=["compile"])[0]) is None
    # data-parallel is the launcher's to say: two nodes of one device each are two ranks, as two devices are
    for over in ({"devices": [2]}, {"nodes": [2]}):
        spread = cells(modes=["compile"], **over)[0]
        assert launchers.of(spread).data_parallel and not launchers.of(cells()[0]).data_parallel
        assert "data-parallel runs are eager" in adapters.unsupported(spread, WORKLOADS["torch-convnet"])


def test_what_a_backend_never_runs_is_data_in_its_spec_said_once():
    """Precisions and modes a backend never runs are its spec's, with their reasons (bench.plan.backends): what its
    implementation says of them is that text, and no text is written twice."""
    cpu = backends.get("cpu")
    for precision, why in specs.get("cpu").precisions.items():
        assert cpu.unsupported(precision, 1) == why
    assert cpu.unsupported("fp32", 1) is None
    assert cpu.unsupported("tf32", 10**6).endswith("at least one core per process")  # the machine first
    for name, spec in specs.BACKENDS.items():
        for mode, why in spec.modes.items():
            assert adapters.unsupported(cells(modes=[mode], backend=name)[0], WORKLOADS["lightning-convnet"]) == why
    texts = [why for spec in specs.BACKENDS.values() for why in spec.precisions.values()]
    assert len(set(texts)) == len(texts)  # each backend's own words; what they share is one constant (specs.TF32)
    assert sum(why == specs.GRAPHS for spec in specs.BACKENDS.values() for why in spec.modes.values()) == 3


def first_losses(workload: str, cell, mnist_dir) -> list[float]:
    """The first ``STEPS`` training losses of the workload's own step, seeded as the worker seeds a cell."""
    torch.manual_seed(cell.seed)
    train, _ = convnet.loaders(cell, str(mnist_dir))
    device = backends.get(cell.backend).torch_device()
    if workload == "torch-convnet":
        step = plain.Step(convnet.ConvNet(), lambda p: convnet.optimizer(p, cell.lr), convnet.loss_fn, cell, device)
        step.model.train()
        return [step(x.to(device), y.to(device)).item() for x, y in plain.cycle(train, STEPS)]

    class Losses(pl.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.losses.append(outputs["loss"].item())

    module = lightning_convnet.LitConvNet(cell.lr)
    adapters.lightning_module(module, cell)
    losses = Losses()
    trainer = lightning_convnet.make_trainer(cell, backends.get(cell.backend), max_steps=STEPS, logger=False,
                                             callbacks=[losses])  # fmt: skip
    trainer.fit(module, train_dataloaders=train)
    return losses.losses


def parity_cells(workload: str, precision: str, modes: list[str]):
    backend = backends.detect()
    found = cells(workloads=[workload], precisions=[precision], modes=modes, backend=backend)
    why = planning.unsupported_reason(found[-1])
    if why:
        pytest.skip(f"{backend} {precision}: {why}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["torch-convnet", "lightning-convnet"])
def test_compile_trains_the_same_losses_as_eager(workload, mnist_dir, cache):
    # fp32, whose tolerance is the tightest: the harness's part (what is compiled, with which masks) is the same at
    # every precision, and each precision's compile of the plain loop costs make test ~15 s of a 2-core machine
    precision = "fp32"
    eager, compiled = parity_cells(workload, precision, ["eager", "compile"])
    # Inductor draws dropout masks with its own generator; fallback_random makes it draw eager's, so that the same
    # seed gives the same masks and the losses can be compared step by step.
    with torch._inductor.config.patch(fallback_random=True):
        losses = {c.mode: first_losses(workload, c, mnist_dir) for c in (eager, compiled)}
    assert losses["compile"] == pytest.approx(losses["eager"], rel=TOLERANCE[precision])
    assert losses["eager"][-1] < losses["eager"][0]  # it trains


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_lightning_and_the_plain_loop_train_the_same_losses(precision, mnist_dir, cache):
    (cell,) = parity_cells("torch-convnet", precision, ["eager"])
    lightning = parity_cells("lightning-convnet", precision, ["eager"])[0]
    expected = pytest.approx(first_losses("torch-convnet", cell, mnist_dir), rel=TOLERANCE[precision])
    assert first_losses("lightning-convnet", lightning, mnist_dir) == expected


@pytest.mark.slow
def test_compile_records_compile_seconds_and_leaves_a_recompilation_out_of_steady_throughput(
    tmp_path, mnist_dir, cache
):
    # 10 batches of 32 and a last one of 16: the first epoch's last step compiles a graph of its own after warmup
    suite = tmp_path / "modes.toml"
    suite.write_text(
        'backend = "cpu"\nworkloads = ["torch-convnet", "lightning-convnet"]\nmodes = ["compile", "graphs"]\n'
        "epochs = 2\nlimit_train = 336\nlimit_test = 1000\nwarmup_steps = 3\nprofile_steps = 4\ntta_target = 0.5\n"
    )
    results = tmp_path / "results"
    # make test runs beside other tests: the host is busy, and the report compares its cells all the same
    out = bench_cli(["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--include-busy"],
                    bench_env(mnist_dir, cache), timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {(r["workload"], r["cell"]["mode"]): r for r in run_records(results)}
    for w in ("torch-convnet", "lightning-convnet"):
        assert recs[w, "graphs"]["status"] == "unsupported" and "CUDA only" in recs[w, "graphs"]["reason"]
        r = recs[w, "compile"]
        assert r["status"] == "ok", r["reason"]
        assert r["precision_effective"] == "fp32" and r["throughput_samples_per_s"] > 0
        c, t = r["compile"], r["timing"]
        # forward and backward graphs (and the plain loop's optimizer step), compiled in warmup
        assert c["compilations"] >= 1 and c["compile_seconds"] > 0, c
        # the partial batch's graph: its segment (the first epoch's 7 steady steps and it) is left out, and 3 steps
        # of warmup follow in the second epoch, whose last step reuses that graph
        assert t["compilations_after_warmup"] >= 1, t
        assert t["left_out"] == [{"phase": "train", "reason": "compilation in a steady segment", "steps": 8 + 3,
                                  "compilations": t["compilations_after_warmup"]}], t  # fmt: skip
        assert t["steady_segments"] == 1 and t["steady_samples"] == 7 * 32 + 16, t
        assert c["graph_breaks"] >= 0 and c["recompilations"] >= 1 and c["inductor_cache_misses"] >= 0, c
        assert any("grad_mode" in reason for reason in c["recompile_reasons"]), c  # evaluation: a new graph
        assert r["profile"]["status"] == "ok"  # the profile runs the compiled step
    report = (results / "report" / "REPORT.md").read_text()
    overview, _, fastest = report.partition("## What the hardware can do")
    assert "compile s" in overview and "compile, input loader" in fastest  # a column, and the fastest way


def test_a_record_from_before_compilations_were_left_out_is_flagged():
    base = {"compilations": 3, "compile_seconds": 40.0, "graph_breaks": 0, "recompilations": 1}
    assert compile_tracker.report([base]) == {"compile s": "40.0", "compilations": "3 (0 graph breaks, 1 recompiles)"}
    # schema 3 counted them in compile, where they were a second field of the name: upgrade moves them to timing
    old = {"schema_version": 3, "cell": {}, "compile": {**base, "compilations_after_warmup": 2},
           "timing": {"warmup_steps": 5}, "accuracy": {"tta_target": 0.99, "final_accuracy": 0.99}}  # fmt: skip
    up = schema.upgrade(old)
    assert up["timing"] == {"warmup_steps_run": 5, "compilations_after_warmup": 2} and up["compile"] == base
    assert up["accuracy"] == {"final_accuracy": 0.99} and schema.upgrade(up) == up
    note = aggregate._left_out(pd.DataFrame({"timing": [up["timing"]]}))
    assert note == "WARNING: 2 compilations inside steady-state training: its samples/s include them"


def test_the_report_sets_the_fastest_way_beside_the_seeds():
    from bench.report import verdicts

    def rec(mode: str, placement: str, tput: float, repeat: int) -> dict:
        flat = {"schema_version": 2, "status": "ok", "workload": "torch-convnet", "backend": "cuda",
                "device_count": 1, "precision": "fp32", "repeat": repeat, "batch_size": 32,
                "throughput_samples_per_s": tput, "tta_seconds": 50.0 / tput * 1000, "env": {"host": "box"},
                "device_name": "GPU"}  # fmt: skip
        r = schema.upgrade(flat)
        r["cell"].update(mode=mode, input=placement)
        if mode != "eager":
            r["compile"] = {"compilations": 3, "compile_seconds": 9.0, "compilations_after_warmup": 0}
        return r

    recs = [rec("eager", "loader", t, i) for i, t in enumerate((900.0, 1000.0, 1100.0))]
    recs += [rec("graphs", "device", t, i) for i, t in enumerate((2700.0, 3000.0, 3300.0))]
    recs += [rec("compile", "loader", 1500.0, 0)]
    s = aggregate.summarise(aggregate.frame(recs), "cuda/fp32", include_unquiet=True)  # no contention section here
    (row,) = verdicts.fastest(s).to_dict("records")
    assert row["fastest"] == "graphs, input device" and row["seed samples/s"] == "1,000"
    # the repeats ran in blocks (one of each per round): paired, every round's ratio is 3
    assert str(row["speedup [95% CI]"]) == "3.00x [3.00–3.00]" and row["compile s"] == "9.0"
    for r in recs:
        r["cell"]["run_id"] = r["cell"]["mode"]  # as if from separate runs: Welch on logs
    (row,) = verdicts.fastest(aggregate.summarise(aggregate.frame(recs), "cuda/fp32", include_unquiet=True)).to_dict(
        "records"
    )
    assert str(row["speedup [95% CI]"]) == "3.00x [2.39–3.77]"
    assert row["TTA s"] == "16.7 (3 of 3 reached)" and row["seed TTA s"] == "50.0 (3 of 3 reached)"
