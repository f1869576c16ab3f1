"""Progress of a sweep: the run order, per-epoch lines, the ETA, and the two displays (plain lines, live bars)."""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import io
import os
import pty
import re
import select
import struct
import termios
import time
from pathlib import Path

import pytest

from bench import backends, cli, records
from bench.plan import suite
from bench.plan.cell import Cell
from bench.plan.suite import SuiteError
from bench.records import schema
from bench.run import estimate, runner, sweep
from bench.run.events import Listener
from bench.run.meter import Meter
from bench.run.progress import Progress, epoch_text
from tests.conftest import expand

ESCAPES = re.compile(r"[\r\x1b]")


def settings(**over) -> dict:
    raw = {"backend": "cpu", "workloads": ["lightning-convnet", "torch-convnet"], "precisions": ["fp32", "bf16-mixed"]}
    return suite.validate("t", {**raw, **over})


def test_random_order_is_seeded_within_each_repeat_and_keeps_fingerprints():
    s = settings(repeats=3, order="random", order_seed=7)
    listed = expand("t", s)
    ran = suite.order(listed, s)
    assert ran == suite.order(expand("t", s), s)  # the same command resumes in the same order
    assert sorted(c.fingerprint for c in ran) == sorted(c.fingerprint for c in listed)  # every cell once, unchanged
    assert [c.repeat for c in ran] == [c.repeat for c in listed]  # shuffled within each repeat's block only
    assert ran != listed
    assert suite.order(listed, {**s, "order_seed": 8}) != ran
    assert suite.order(listed, settings(repeats=3)) == listed  # interleaved: as listed
    with pytest.raises(SuiteError, match="order 'shuffled'; valid: interleaved, random"):
        settings(order="shuffled")
    with pytest.raises(SuiteError, match="order_seed = True should be a int"):
        settings(order_seed=True)


def _record(path: Path, cell: Cell, seconds: float, host: str = "here", status: str = "ok") -> None:
    run = {"started_at": "2026-01-01T00:00:00+00:00", "process_seconds": seconds}
    sections = {name: {} for name in schema.sections()}  # an ok record has every section
    sections.update(cell=runner.cell_section(cell, "r"), run=run, env={"host": host})
    record = records.new(status, None, **sections)
    records.append(path, record)


def test_eta_from_earlier_records_repeats_and_the_same_workload(tmp_path):
    s = settings(workloads=["torch-convnet"], precisions=["fp32", "bf16-mixed"], repeats=2)
    fp32_0, bf16_0, fp32_1, bf16_1 = expand("t", s)
    other = dataclasses.replace(fp32_0, workload="lightning-convnet")
    # Earlier records under the results dir: median of this host's ok ones; other hosts, failures and the
    # committed references do not count.
    for seconds in (10.0, 30.0, 20.0):
        _record(tmp_path / "old" / "records.jsonl", fp32_0, seconds)
    _record(tmp_path / "old" / "records.jsonl", fp32_0, 99.0, host="elsewhere")
    _record(tmp_path / "old" / "records.jsonl", bf16_0, 99.0, status="failed")
    _record(tmp_path / "reference" / "h100" / "records.jsonl", bf16_1, 99.0)
    est = estimate.Estimator(estimate.history(tmp_path, "here"))
    assert est.seconds(fp32_0) == (20.0, estimate.RECORD)
    assert est.seconds(bf16_0) == (None, None)

    est.add(bf16_0, 60.0)  # finished in this run: its next repeat, and the workload's other cells, learn from it
    assert est.seconds(bf16_1) == (60.0, estimate.REPEAT)
    assert est.seconds(fp32_1) == (60.0, estimate.WORKLOAD)
    three_epochs = dataclasses.replace(fp32_1, epochs=3 * fp32_1.epochs, limit_train=20000)  # 3 × epochs, 1/3 images
    assert est.seconds(three_epochs) == (pytest.approx(60.0), estimate.WORKLOAD)
    assert est.seconds(other) == (None, None)

    e = estimate.eta([fp32_0, bf16_1, fp32_1, other], est)
    assert (e.seconds, e.known, e.unknown) == (140.0, 3, 1)
    now = datetime.datetime(2026, 1, 1, 12, 0)
    assert estimate.eta_text(e, now) == (
        "ETA 2 min (about 12:02) for 3 of the 4 cells left, 1 of them rough (scaled from other cells of the same "
        "workload); ETA unknown for 1 cell"
    )
    assert estimate.eta_text(estimate.eta([other], est)) == "ETA unknown for 1 cell"
    big = estimate.Eta(seconds=4800.0, sources={estimate.RECORD: 24}, unknown=6)
    assert estimate.plan_text(big, skipped=2) == (
        "estimated 1 h 20 min for 24 of the 30 cells to run, from earlier records on this host; 6 without an "
        "estimate (skipped: 2 recorded in this run)"
    )
    assert [estimate.duration(s) for s in (45, 600, 3600, 5000)] == ["45 s", "10 min", "1 h 0 min", "1 h 23 min"]


def _curve(tmp_path: Path) -> list[dict]:
    """Two epochs through the real meter, which writes curve.csv as a worker does; read back as the runner does."""
    m = Meter(backends.get("cpu"), warmup_steps=1, tta_target=0.9, curve_path=tmp_path / "curve.csv")
    for epoch, accuracy in enumerate((0.85, 0.95)):
        m.epoch_start()
        for _ in range(4):
            time.sleep(0.002)
            m.step_end(32)
        m.eval_start()
        m.eval_end(accuracy)
        m.epoch_end(epoch, 0.5)
    return runner.read_curve(tmp_path / "curve.csv")


def test_plain_lines_for_epochs_and_eta(tmp_path):
    rows = _curve(tmp_path)
    rate = 256 / sum(r["train_seconds"] for r in rows)
    assert epoch_text(rows, 2) == f"epoch 2/2: {rate:,.0f} samples/s so far, test accuracy 0.9500"
    out = io.StringIO()  # not a terminal
    p = Progress(3, out)
    p.plan(estimate.Eta(seconds=120.0, sources={estimate.RECORD: 2}, unknown=1))
    p.cell_start("[1/3] torch-convnet/cpux1/fp32 repeat 0", 2, 45.0)
    p.curve(rows[:1])
    p.curve(rows)
    p.curve(rows)  # nothing new: nothing printed
    p.cell_end()
    p.eta(estimate.Eta(seconds=45.0, sources={estimate.REPEAT: 1}))
    p.close()
    lines = out.getvalue().splitlines()
    assert not ESCAPES.search(out.getvalue())
    assert lines[0] == (
        "estimated 2 min for 2 of the 3 cells to run, from earlier records on this host; 1 without an estimate"
    )
    assert re.fullmatch(r"  epoch 1/2: [\d,]+ samples/s so far, test accuracy 0\.8500", lines[1])
    assert lines[2] == f"  epoch 2/2: {rate:,.0f} samples/s so far, test accuracy 0.9500"
    assert re.fullmatch(r"  ETA 45 s \(about \d\d:\d\d\) for the 1 cell left \(elapsed \d+ s\)", lines[3])
    assert len(lines) == 4


def test_live_bars_in_a_terminal(tmp_path):
    rows = _curve(tmp_path)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a terminal 160 columns wide
    with open(slave, "w", closefd=True) as tty:
        p = Progress(2, tty)
        assert p.live
        p.plan(estimate.Eta(seconds=125.0, sources={estimate.RECORD: 2}))
        p.cell_start("[1/2] torch-convnet/cpux1/fp32 repeat 0", 2, 60.0)
        p.curve(rows)
        p.tick()
        p.cell_end()
        p.line("[1/2] torch-convnet/cpux1/fp32 repeat 0: ok")
        p.eta(estimate.Eta(seconds=65.0, sources={estimate.REPEAT: 1}))
        p.close()
        tty.flush()
    shown = b""
    while chunk := _read(master):
        shown += chunk
    os.close(master)
    text = shown.decode()
    assert "\r" in text  # drawn in place
    assert re.search(r"sweep 0/2 cells .*ETA 2 min \(about \d\d:\d\d\) for the 2 cells left", text)
    assert re.search(r"epoch 2/2 .*samples/s so far, test accuracy 0\.9500", text)
    assert re.search(r"sweep 1/2 cells .*ETA 1 min \(about \d\d:\d\d\) for the 1 cell left", text)
    assert "estimated 2 min for the 2 cells to run" in text and "repeat 0: ok\r\n" in text


def _read(fd: int) -> bytes:
    if not select.select([fd], [], [], 0.5)[0]:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the other end is closed: all read
        return b""


SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
precisions = ["fp16-mixed", "fp32"]
epochs = 2
limit_train = 128
limit_test = 128
warmup_steps = 1
profile_steps = 0
tta_target = 0.5
"""


def test_a_real_sweep_prints_plain_lines_and_records_its_order(tmp_path, mnist_dir, cache, capsys):
    (tmp_path / "s.toml").write_text(SUITE)
    s = suite.validate("s", {**suite.load(str(tmp_path / "s.toml"))[1], "order": "random", "order_seed": 3})
    planned = suite.order(expand("s", s), s)
    results = tmp_path / "results"
    assert sweep.sweep(planned, results, "r", str(mnist_dir), "random", 3) == 0  # in this process: no start-up
    out = capsys.readouterr().out
    assert not ESCAPES.search(out)  # not a terminal: plain lines only
    assert out.startswith("no estimate for the 1 cell to run: no earlier records of them on this host")
    assert re.search(r"^  epoch 1/2: [\d,]+ samples/s so far, test accuracy 0\.\d{4}$", out, re.M)
    assert re.search(r"^  epoch 2/2: [\d,]+ samples/s so far, test accuracy 0\.\d{4}$", out, re.M)
    assert re.search(r"^\[\d/2\] torch-convnet/cpux1/fp32 repeat 0: ok, [\d,]+ samples/s", out, re.M)
    labels = re.findall(r"^\[(\d)/2\] (\S+) repeat 0: (?:ok|unsupported)", out, re.M)
    assert [(str(i), c.cell_id) for i, c in enumerate(planned, 1)] == labels

    recs = records.read(results / "r" / "records.jsonl")
    for r in recs:
        assert schema.written(r) == []
        assert r["run"]["order"] == "random" and r["run"]["order_seed"] == 3
        assert planned[r["run"]["position"] - 1].fingerprint == r["cell"]["fingerprint"]
    assert sorted(r["cell"]["fingerprint"] for r in recs) == sorted(c.fingerprint for c in expand("s", s))

    # `bench run --order random --order-seed 3 --dry-run`: the same order, and the estimate from that record.
    args = ["run", "--suite", str(tmp_path / "s.toml"), "--results-dir", str(results), "--run-id", "next"]
    assert cli.main([*args, "--order", "random", "--order-seed", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [line.split(" repeat")[0] for line in out.splitlines()[:2]] == [c.cell_id for c in planned]
    ok = next(r for r in recs if r["status"] == "ok")
    seconds = estimate.duration(ok["run"]["process_seconds"])
    assert f"estimated {seconds} for the 1 cell to run, from earlier records on this host" in out
    assert "2 cells in suite s (random order)" in out


@pytest.mark.slow
def test_a_sweep_tells_a_listener_its_events_in_order_and_shows_nothing_itself(tmp_path, mnist_dir, cache, capsys):
    """The sweep shows nothing itself but its summary line: it tells a listener its events, in order
    (bench.run.events; the display is one such listener). A run, then the same run resumed."""

    class Notes(Listener):
        def __init__(self):
            self.seen = []

        def planned(self, plan, auto):
            self.seen.append(("planned", len(plan.cells), auto))

        def skipped(self, position, cell, record):
            self.seen.append(("skipped", position, record["status"]))

        def started(self, position, cell, again, seconds):
            self.seen.append(("started", position, again))

        def epochs(self, rows):  # told at each look (about a second): the epochs finished by the last
            self.seen = self.seen[:-1] if self.seen[-1][0] == "epochs" else self.seen
            self.seen.append(("epochs", len(rows)))

        def recorded(self, position, cell, record, eta=None):
            self.seen.append(("recorded", position, record["status"], eta is not None))

        def ended(self):
            self.seen.append(("ended",))

    (tmp_path / "s.toml").write_text(SUITE)
    s = suite.validate("s", suite.load(str(tmp_path / "s.toml"))[1])
    planned, results = suite.order(expand("s", s), s), tmp_path / "results"
    notes = Notes()
    assert sweep.sweep(planned, results, "again", str(mnist_dir), listener=notes) == 0
    recs = records.read(results / "again" / "records.jsonl")
    status = {c.fingerprint: r["status"] for r in recs for c in planned if c.fingerprint == r["cell"]["fingerprint"]}
    ran = [i for i, c in enumerate(planned, 1) if status[c.fingerprint] == "ok"]
    want = [("planned", 2, None)]
    for i in range(1, len(planned) + 1):
        if i in ran:
            want += [("started", i, None), ("epochs", 2), ("recorded", i, "ok", True)]
        else:
            want += [("recorded", i, "unsupported", False)]
    assert notes.seen == [*want, ("ended",)]
    assert capsys.readouterr().out.splitlines() == [
        f"2 cells: 1 ok, 1 unsupported, 0 failed/timeout/diverged. Records: {results / 'again' / 'records.jsonl'}"
    ]
    notes = Notes()
    assert sweep.sweep(planned, results, "again", str(mnist_dir), listener=notes) == 0  # resumed: all recorded
    assert notes.seen == [("planned", 2, None), *(("skipped", i, status[c.fingerprint]) for i, c in
                                                  enumerate(planned, 1)), ("ended",)]  # fmt: skip
    capsys.readouterr()
