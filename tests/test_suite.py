"""Suite files: validation with clear errors, expansion into cells, fingerprints."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from bench.errors import UnknownName
from bench.plan import suite
from bench.plan.cell import Cell
from bench.plan.suite import SuiteError
from tests.conftest import expand


def settings(**over) -> dict:
    raw = {"backend": "cpu", "workloads": ["lightning-convnet", "torch-convnet"], **over}
    return suite.validate("t", raw)


@pytest.mark.parametrize("name", suite.suite_names())
def test_packaged_suites_are_valid(name):
    loaded_name, raw = suite.load(name)
    assert loaded_name == name
    suite.validate(name, raw)


def test_packaged_suites_exist():
    assert {"smoke", "cpu", "gpu"} <= set(suite.suite_names())


def test_expansion_order_interleaves_repeats():
    cells = expand("t", settings(precisions=["fp32", "bf16-mixed"], repeats=2))
    assert len(cells) == 2 * 2 * 2
    assert [(c.repeat, c.workload, c.precision) for c in cells[:4]] == [
        (0, "lightning-convnet", "fp32"),
        (0, "lightning-convnet", "bf16-mixed"),
        (0, "torch-convnet", "fp32"),
        (0, "torch-convnet", "bf16-mixed"),
    ]
    assert {c.seed for c in cells if c.repeat == 1} == {1}


def test_workload_defaults_and_overrides():
    raw = {"epochs": 3, "workload": {"torch-convnet": {"epochs": 5, "limit_train": 100}}}
    cells = {c.workload: c for c in expand("t", settings(**raw))}
    assert cells["lightning-convnet"].epochs == 3 and cells["lightning-convnet"].limit_train is None
    assert cells["torch-convnet"].epochs == 5 and cells["torch-convnet"].limit_train == 100
    assert cells["torch-convnet"].batch_size == 32 and cells["torch-convnet"].lr == 0.5  # the seed's


def test_fastai_recipe_defaults_pretrained_and_lr_find():
    raw = {"workloads": ["fastai-resnet18", "torch-convnet"], "workload": {"fastai-resnet18": {"lr": "find"}}}
    cells = {c.workload: c for c in expand("t", settings(**raw))}
    f = cells["fastai-resnet18"]
    assert (f.epochs, f.batch_size, f.num_workers, f.lr, f.pretrained) == (2, 64, 0, "find", True)
    assert cells["torch-convnet"].pretrained is None  # no pretrained weights: the setting does not apply
    (g,) = expand("t", settings(workloads=["fastai-resnet18"], pretrained=False, num_workers=2))
    assert (g.pretrained, g.num_workers, g.lr) == (False, 2, 0.0209)
    assert g.fingerprint != f.fingerprint
    with pytest.raises(SuiteError, match=r'lr = "find" needs a workload with a learning-rate finder'):
        expand("t", settings(lr="find"))


def test_lr_find_steps_apply_to_the_finder_and_fastais_default_keeps_the_fingerprint():
    raw = {"workloads": ["fastai-resnet18", "torch-convnet"]}
    default = {c.workload: c for c in expand("t", settings(**raw))}
    assert default["fastai-resnet18"].lr_find_steps == 100 and default["torch-convnet"].lr_find_steps is None
    # a cell as written before the setting existed: fastai's default is the same measurement
    old = Cell(**{k: v for k, v in vars(default["fastai-resnet18"]).items() if k != "lr_find_steps"})
    assert old.lr_find_steps is None and old.fingerprint == default["fastai-resnet18"].fingerprint
    short = {c.workload: c for c in expand("t", settings(**raw, lr_find_steps=20))}
    assert short["fastai-resnet18"].lr_find_steps == 20 and short["torch-convnet"].lr_find_steps is None
    assert short["fastai-resnet18"].fingerprint != default["fastai-resnet18"].fingerprint
    assert short["torch-convnet"].fingerprint == default["torch-convnet"].fingerprint
    with pytest.raises(
        SuiteError,
        match=r"\[workload.fastai-resnet18\]: lr_find_steps = 5 should be an integer in \[10, 100,000\]: the finder",
    ):
        settings(workload={"fastai-resnet18": {"lr_find_steps": 5}})


def test_seed_epochs_are_the_default():
    (cell,) = expand("t", settings(workloads=["lightning-convnet"]))
    assert (cell.epochs, cell.batch_size, cell.precision, cell.devices) == (10, 32, "fp32", 1)


def test_devices_all_is_deduplicated_on_one_device():
    cells = expand("t", settings(workloads=["torch-convnet"], devices=[1, "all"]))
    assert [c.devices for c in cells] == [1]


def test_fingerprint_tracks_what_is_measured():
    a, b = expand("t", settings(workloads=["torch-convnet"], repeats=2))
    assert a.fingerprint != b.fingerprint
    (c,) = expand("other-name", settings(workloads=["torch-convnet"], timeout_s=5))
    assert c.fingerprint == a.fingerprint  # suite name and timeout do not change the measurement
    (d,) = expand("t", settings(workloads=["torch-convnet"], epochs=2))
    assert d.fingerprint != a.fingerprint


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"workloads": ["resnet9000"]}, r"unknown workload 'resnet9000'; valid: fastai-resnet18, lightning-convnet"),
        ({"precisions": ["fp8"]}, r"unknown precision 'fp8'; valid: fp32, tf32, fp16-mixed"),
        ({"backend": "quantum"}, r"unknown backend 'quantum'; valid: cpu, cuda"),
    ],
)
def test_unknown_names_list_the_valid_ones(raw, message):
    with pytest.raises(UnknownName, match=message):
        settings(**raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epoch": 3}, r"unknown key 'epoch'; valid: description, backend"),
        ({"epochs": "ten"}, r"epochs = 'ten' should be a int"),
        ({"repeats": True}, r"repeats = True should be a int"),
        ({"devices": [0]}, r"devices entry 0 should be an integer in \[1, 4,096\] or \"all\""),
        ({"nodes": ["all"]}, r"nodes entry 'all' should be an integer in \[1, 4,096\]"),
        ({"allocator": "mine"}, r"allocator 'mine'; valid: auto, tcmalloc"),
        ({"workload": {"torch-convnet": {"repeats": 2}}}, r"\[workload.torch-convnet\] key 'repeats'"),
        ({"workloads": []}, r"`workloads` is required"),
        ({"lr": "fast"}, r"lr = 'fast' should be a number in \(0, 1e\+30\] or \"find\""),
        ({"pretrained": "yes"}, r"pretrained = 'yes' should be a bool"),
    ],
)
def test_bad_suite_content_fails_with_the_key(raw, message):
    with pytest.raises(SuiteError, match=message):
        settings(**raw)


def test_precisions_per_workload():
    over = {"torch-resnet18": {"precisions": ["fp32"]}}
    found = expand("t", settings(workloads=["fastai-resnet18", "torch-resnet18"],
                                       precisions=["fp32", "bf16-mixed"], workload=over))  # fmt: skip
    assert [(c.workload, c.precision) for c in found] == [
        ("fastai-resnet18", "fp32"), ("fastai-resnet18", "bf16-mixed"), ("torch-resnet18", "fp32")
    ]  # fmt: skip
    with pytest.raises(UnknownName, match="unknown precision 'fp8'"):
        settings(workload={"torch-convnet": {"precisions": ["fp8"]}})


def test_suite_files_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('workloads = ["torch-convnet"]\nepochs = 1\n')
    name, raw = suite.load(str(path))
    assert name == "mine" and raw["epochs"] == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("workloads = [\n")
    with pytest.raises(SuiteError, match="not valid TOML"):
        suite.load(str(bad))
    with pytest.raises(
        UnknownName, match="unknown suite 'nosuch'; valid: cpu, fastest, gpu, gpu-modes, gpu-reference, smoke"
    ):
        suite.load("nosuch")
    with pytest.raises(SuiteError, match="not found"):
        suite.load(str(tmp_path / "missing.toml"))


def test_cell_round_trips_through_json():
    (cell,) = expand("t", settings(workloads=["torch-convnet"]))
    assert Cell.from_json(cell.to_json()) == cell


def test_a_cell_holds_the_settings_table_says_it_holds():
    """A setting is declared once (bench.plan.settings): those marked ``field`` are Cell fields of the same name,
    filled from the suite as they are; the rest of a cell is where it runs and which repeat it is."""
    from bench.plan.settings import CELL_FIELDS

    axes = {"workload", "backend", "precision", "devices", "nodes", "repeat", "seed", "input", "mode", "suite"}
    assert {f.name for f in dataclasses.fields(Cell)} == set(CELL_FIELDS) | axes
    cell = expand("t", settings(workloads=["torch-convnet"], warmup_steps=7, timeout_s=9))[0]
    assert (cell.warmup_steps, cell.timeout_s, cell.lr, cell.pretrained) == (7, 9, 0.5, None)


def test_what_cannot_run_on_several_devices_or_nodes_says_why():
    from bench import cluster
    from bench.run import planning

    (cell,) = expand("t", settings(workloads=["fastai-resnet18"], backend="cpu", devices=[2]))
    assert "one device only: fastai's distrib_ctx needs Hugging Face accelerate" in planning.unsupported_reason(cell)
    (cell,) = expand("t", settings(workloads=["torch-convnet"], backend="xla", devices=[2]))
    assert "on XLA it runs on one device" in planning.unsupported_reason(cell)
    (cell,) = expand("t", settings(workloads=["torch-convnet"], backend="cpu", nodes=[2]))
    assert (cell.world_size, cell.cell_id) == (2, "torch-convnet/2xcpux1/fp32")
    assert "needs `bench run` on each node with --nnodes" in planning.unsupported_reason(cell)
    two = cluster.resolve(2, 1, "127.0.0.1:29500")
    assert planning.unsupported_reason(cell, two) is None
    (three,) = expand("t", settings(workloads=["torch-convnet"], backend="cpu", nodes=[3]))
    assert "a cell of 3 nodes, but this run spans 2" in planning.unsupported_reason(three, two)


def test_node_layouts_from_flags_and_schedulers():
    from bench.cluster import ClusterError, resolve

    assert resolve(env={}).nnodes == 1
    pet = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29400"}
    c = resolve(env=pet)
    assert (c.nnodes, c.node_rank, c.host, c.port, c.rendezvous) == (
        2,
        1,
        "job-node-0-0.job",
        29400,
        "job-node-0-0.job:29401",
    )
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", "MASTER_ADDR": "n01", "MASTER_PORT": "15000"}
    assert (resolve(env=slurm).node_rank, resolve(env=slurm).source) == (1, "SLURM")
    assert resolve(3, 2, "h:1", env=pet).nnodes == 3  # flags win
    for args, message in [
        ((2, None, None), "needs --rdzv-endpoint HOST:PORT"),
        ((2, 2, "h:1"), "--node-rank must be 0 to 1"),
        ((2, 0, "h"), "should be HOST:PORT"),
    ]:
        with pytest.raises(ClusterError, match=message):
            resolve(*args, env={})
    with pytest.raises(ClusterError, match="needs MASTER_ADDR"):
        resolve(env={"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0"})


# Every numeric setting out of its range, as a suite file, a [workload.<name>] section or an option would give it.
OUT_OF_RANGE = [
    ("epochs", 0), ("epochs", -1), ("batch_size", 0), ("limit_train", 0), ("limit_train", -5), ("limit_train", 60_001),
    ("limit_test", 0), ("limit_test", 10_001), ("num_workers", -1), ("lr", float("nan")), ("lr", float("inf")),
    ("lr", 0), ("lr", -0.5), ("tta_target", 0), ("tta_target", 1.5), ("tta_target", float("nan")),
    ("warmup_steps", -1), ("profile_steps", -1), ("timeout_s", 0), ("timeout_s", -3), ("repeats", 0),
    ("repeats", "auto:0"), ("repeats", "often"), ("seed", -1), ("seed", 2**31), ("order_seed", -1),
    ("lr_find_steps", 9), ("price_per_hour", 0), ("price_per_hour", float("inf")), ("target_ci", 0),
    ("target_ci", 1.5),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE)
def test_every_setting_out_of_its_range_is_refused_naming_it(key, value):
    with pytest.raises(SuiteError, match=rf"^suite t: {key} = {re.escape(repr(value))} should be "):
        settings(**{key: value})
    if key in suite.PER_WORKLOAD:
        over = {"workload": {"torch-convnet": {key: value}}}
        with pytest.raises(SuiteError, match=rf"^suite t \[workload.torch-convnet\]: {key} = "):
            settings(**over)


def test_an_option_out_of_range_names_the_option():
    from bench import cli

    args = cli.parser().parse_args(["run", "--suite", "smoke", "--limit-train", "0"])
    with pytest.raises(SuiteError, match=r"^--limit-train: limit_train = 0 should be an integer in \[1, 60,000\]"):
        cli.build_cells(args)
    with pytest.raises(SystemExit):  # argparse's own error: 10 could be 10% or 1000%
        cli.parser().parse_args(["run", "--target-ci", "10"])


def test_a_cell_listed_twice_is_one_cell():
    s = settings(workloads=["torch-convnet", "torch-convnet"], precisions=["fp32", "fp32"], repeats=2)
    cells, copies = suite.collapse(expand("t", s))
    assert [(c.workload, c.repeat) for c in cells] == [("torch-convnet", 0), ("torch-convnet", 1)]
    assert len(copies) == 6 and {c.fingerprint for c in copies} == {c.fingerprint for c in cells}


def test_auto_repeats_start_with_five_and_cap():
    assert suite.repeats_plan("auto") == (5, 10) and suite.repeats_plan("auto:7") == (5, 7)
    assert suite.repeats_plan("auto:2") == (2, 2) and suite.repeats_plan(4) == (4, None)
    s = settings(repeats="auto:6")
    assert (s["repeats"], s["repeats_max"]) == (5, 6) and len(expand("t", s)) == 2 * 5


def test_bench_list_names_what_there_is(capsys):
    from bench import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "workloads:  fastai-resnet18, lightning-convnet, torch-convnet, torch-resnet18" in out
    assert "modes:      eager, compile, graphs" in out and "inputs:     loader, device" in out
    assert "backends:   cpu, cuda, xla, torchtpu (detected here: " in out and "gcp/n2-standard-8/us-central1" in out


def test_the_configuration_key_is_declared_in_the_settings_table_and_listed_in_the_docs():
    from bench.plan import settings
    from tests.conftest import ROOT

    keyed = [k for k, s in settings.SETTINGS.items() if s.key]
    assert keyed == list(settings.CONFIG_KEY) and set(keyed) <= set(settings.CELL_FIELDS)  # a cell holds each
    assert {settings.SETTINGS[k].key for k in keyed} <= set(settings.KEY_KINDS)
    assert {"timeout_s", "profile_steps", "allow_emulated"}.isdisjoint(keyed)  # they change no measurement
    docs = (ROOT / "docs" / "methodology.md").read_text()
    listed = docs.split("<!-- key-table -->\n")[1].split("\n<!-- /key-table -->")[0]
    assert listed == settings.key_table(), "docs/methodology.md: paste bench.plan.settings.key_table() there"


def test_every_packaged_suite_keeps_its_fingerprints():
    """A cell's fingerprint is what resumes a run and pools its repeats: moving code (issue 42's packages) or adding a
    setting with its default must not change any. The cells of every packaged suite, expanded on a fixed machine (the
    suite's backend, or cpu for auto; 8 devices for "all"), against those recorded before the move."""
    from tests.conftest import ROOT

    want = json.loads((ROOT / "tests/data/suite-fingerprints.json").read_text())
    got = {}
    for name in suite.suite_names():
        n, raw = suite.load(name)
        s = suite.validate(n, raw)
        cells = suite.expand(n, s, "cpu" if s["backend"] == "auto" else s["backend"], lambda: 8)
        got[n] = sorted(f"{c.cell_id} repeat {c.repeat} {c.fingerprint}" for c in cells)
    assert got == want
