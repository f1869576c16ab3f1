"""The energy tracker through zeus: RAPL over a fake powercap tree (counters, a wraparound), NVML through a fake
NVML library under zeus's own GPU layer, and "not measured" with its reason where neither exists."""

from __future__ import annotations

import dataclasses
import time

import pytest

zeus_cpu = pytest.importorskip("zeus.device.cpu")

from zeus.device.cpu import rapl  # noqa: E402

from bench.trackers import energy  # noqa: E402
from tests.test_trackers import backend, small_cell, tracker  # noqa: E402

MAX_UJ = 262_143_328_850  # a real package's max_energy_range_uj


def zone(path, name: str, uj: int) -> None:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")


def set_uj(path, uj: int) -> None:
    (path / "energy_uj").write_text(f"{uj}\n")


@pytest.fixture
def powercap(tmp_path, monkeypatch):
    """A package with a dram zone, as /sys/class/powercap/intel-rapl shows it, and zeus pointed at it."""
    root = tmp_path / "powercap" / "intel-rapl"
    package = root / "intel-rapl:0"
    zone(package, "package-0", 1_000_000)
    zone(package / "intel-rapl:0:0", "dram", 500_000)
    monkeypatch.setattr(rapl, "RAPL_DIR", str(root))
    monkeypatch.setattr(rapl, "CONTAINER_RAPL_DIR", str(tmp_path / "none"))
    rapl.rapl_is_available.cache_clear()
    monkeypatch.setattr(zeus_cpu, "_cpus", None)  # zeus keeps one CPU object per process
    yield package
    rapl.rapl_is_available.cache_clear()


def test_without_counters_every_section_says_not_measured_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(rapl, "RAPL_DIR", str(tmp_path / "absent"))
    monkeypatch.setattr(rapl, "CONTAINER_RAPL_DIR", str(tmp_path / "absent-too"))
    rapl.rapl_is_available.cache_clear()
    monkeypatch.setattr(zeus_cpu, "_cpus", None)
    t = tracker(energy, small_cell(), backend(), tmp_path)
    t.train_start(), t.steady_start(), t.steady_end(320), t.target_reached()
    s = t.section()
    assert s["status"] == "not measured" and s["steady"] is None and s["tta"] is None and s["estimate"] is None
    assert "no RAPL counters" in s["reason"] and "absent" in s["reason"] and "no GPU in this cell" in s["reason"]
    assert energy.report([s]) == {"samples/J": "not measured"}
    rapl.rapl_is_available.cache_clear()


def test_rapl_counters_package_and_dram_apart_with_a_wraparound(tmp_path, powercap):
    dram = powercap / "intel-rapl:0:0"
    t = tracker(energy, small_cell(), backend(), tmp_path)
    t.train_start()  # zeus starts a poller process per counter, which watches for wraparounds
    t.steady_start()
    set_uj(powercap, 31_000_000)  # 30 J of package
    set_uj(dram, 2_500_000)  # 2 J of DRAM
    t.steady_end(600)
    time.sleep(4)  # the pollers are up (a spawned process imports zeus)
    set_uj(powercap, MAX_UJ - 1_000_000)  # evaluation: the counter runs up to its range ...
    time.sleep(1.5)  # ... where the poller (every 1 s; 0.1 s near the top) sees it
    t.steady_start()
    set_uj(powercap, 4_000_000)  # ... and wraps: 1 J to the top and 4 J past zero
    time.sleep(0.5)
    t.steady_end(600)
    t.target_reached()
    s = t.section()
    assert s["status"] == "ok" and s["method"] == {"cpu": "RAPL package counter", "dram": "RAPL dram counter"}
    assert s["steady"]["joules"]["cpu"] == pytest.approx(30 + 5) and s["steady"]["joules"]["dram"] == pytest.approx(2)
    assert s["steady"]["joules"]["gpu"] is None and s["steady"]["samples"] == 1200
    assert s["samples_per_joule"] == pytest.approx(1200 / 37)
    tta = s["tta"]  # from training's start to the target: both segments and the evaluation between them
    assert tta["joules"]["cpu"] == pytest.approx(MAX_UJ / 1e6 - 1 + 4) and tta["total_joules"] > 0
    assert s["not_measured"] == {"gpu": "no GPU in this cell"}
    cols = energy.report([s])
    assert cols["samples/J"] == "32.4" and cols["energy of"] == "cpu+dram"


def test_a_target_never_reached_has_no_energy_to_accuracy(tmp_path, powercap):
    t = tracker(energy, small_cell(), backend(), tmp_path)
    t.train_start(), t.steady_start()
    set_uj(powercap, 11_000_000)
    t.steady_end(100)
    s = t.section()
    assert s["status"] == "ok" and s["tta"] is None and s["steady"]["joules"]["cpu"] == pytest.approx(10)
    assert energy.report([s])["J to target"] == "not reached"


def test_a_segment_left_out_leaves_its_joules_out(tmp_path, powercap):
    t = tracker(energy, small_cell(), backend(), tmp_path)
    t.train_start(), t.steady_start()
    set_uj(powercap, 51_000_000)  # 50 J in a segment in which a graph compiled (bench.run.meter)
    t.steady_cancel()
    t.steady_start()  # the next segment opens a window of its own
    set_uj(powercap, 61_000_000)
    t.steady_end(100)
    s = t.section()
    assert s["steady"]["joules"]["cpu"] == pytest.approx(10) and s["steady"]["samples"] == 100


def test_tpus_have_no_counter_and_say_so(tmp_path, powercap):
    t = tracker(energy, dataclasses.replace(small_cell(), backend="xla"), backend("xla"), tmp_path)
    s = t.section()
    assert "TPU chips expose no public energy counter" in str(s["not_measured"])


@pytest.fixture
def nvml(monkeypatch):
    """Two Hopper GPUs behind NVML's own Python bindings (nvidia-ml-py), their counters set by the test (mJ)."""
    import pynvml
    from zeus.device import gpu as zeus_gpu
    from zeus.device.gpu import nvidia

    counters = {0: 1_000_000, 1: 2_000_000}
    fake = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(counters),
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetArchitecture": lambda h: pynvml.NVML_DEVICE_ARCH_HOPPER,
        "nvmlDeviceGetTotalEnergyConsumption": lambda h: counters[h],
    }
    for name, fn in fake.items():
        monkeypatch.setattr(pynvml, name, fn)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvidia.nvml_is_available.cache_clear()
    monkeypatch.setattr(zeus_gpu, "_gpus", None)
    yield counters
    nvidia.nvml_is_available.cache_clear()


def test_nvml_counters_of_the_cells_gpus(tmp_path, nvml, powercap):
    cell = dataclasses.replace(small_cell(), backend="cuda", devices=1)  # GPU 0 only: the cell's
    t = tracker(energy, cell, backend("cuda"), tmp_path)
    t.train_start(), t.steady_start()
    nvml[0] += 250_000  # 250 J
    nvml[1] += 999_000  # another cell's GPU
    set_uj(powercap, 21_000_000)  # 20 J of package
    t.steady_end(1000)
    nvml[0] += 50_000
    t.target_reached()
    s = t.section()
    assert s["method"]["gpu"] == "NVML total-energy counter" and s["method"]["cpu"] == "RAPL package counter"
    assert s["steady"]["joules"]["gpu"] == pytest.approx(250) and s["steady"]["joules"]["cpu"] == pytest.approx(20)
    assert s["samples_per_joule"] == pytest.approx(1000 / 270)
    assert s["tta"]["joules"]["gpu"] == pytest.approx(300)
