"""The layering of ``bench``: what describes a cell imports no framework, and no import runs back up.

Data flows one way, suite → cells → runner → worker → records → report, and bench's packages are its stages: plan
(what to run), records (what a run wrote), cluster (the nodes of a run), run (the runner, the worker and what they
start: backends, trackers, workloads), report. A module imports (at its top or inside a function) only from its own
layer or lower ones, so the import graph has no upward edge and no cycle between layers. Within a layer a cycle is
refused too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Lowest first: each layer is packages (and the two base modules), and the folders of bench/ are the way a run's data
# takes. A module outside these fails the test: a new one takes its place on purpose.
LAYERS = {
    "base": ["bench.errors", "bench.text"],
    "plan": ["bench.plan"],
    "records": ["bench.records"],
    "cluster": ["bench.cluster"],
    "run": ["bench.run", "bench.backends", "bench.trackers", "bench.workloads"],
    "report": ["bench.report"],
    "cli": ["bench.cli", "bench.__main__", "bench"],
}
FRAMEWORKS = ("torch", "torchvision", "pytorch_lightning", "lightning", "fastai", "torch_xla", "torch_tpu")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a module: that of the longest prefix listed."""
    best = None
    for rank, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_layers.py: give it one"
    return best[0]


def imports(path: Path, module: str) -> set[str]:
    """The bench modules ``path`` imports anywhere in it (``from bench.x import y`` counts as bench.x.y when that
    is a module, else bench.x). bench uses absolute imports only."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("bench")}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: a relative import"
            base = node.module or ""
            if not base.startswith("bench"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                where = ROOT / candidate.replace(".", "/")
                out.add(candidate if where.with_suffix(".py").is_file() or where.is_dir() else base)
    return out - {module}


def graph() -> dict[str, set[str]]:
    return {(name := module_name(p)): imports(p, name) for p in sorted((ROOT / "bench").rglob("*.py"))}


def test_no_import_runs_back_up_and_there_is_no_cycle():
    edges = graph()
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in edges.items() for b in targets if layer(b) > layer(a)]  # fmt: skip
    assert not upward, "\n".join(upward)
    # a cycle: a module that reaches itself (package __init__ files re-export nothing, so no edge is implied)
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} imports itself through {sorted(seen)}"
            if m not in seen and m in edges:
                seen.add(m)
                todo += edges[m]


def frameworks_after(code: str) -> str:
    """The frameworks a fresh Python has imported once ``code`` ran: the last line it prints, as a sorted list."""
    code += f"\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1]


def test_what_describes_a_cell_imports_no_framework():
    """The CLI, the plan (settings, cells, suites), the records, the estimate and the report start without torch,
    Lightning or fastai."""
    light = ["bench.cli", *(module_name(p) for p in sorted((ROOT / "bench/plan").glob("*.py"))), "bench.run.estimate",
             "bench.records", "bench.records.schema", "bench.report", "bench.report.compare", "bench.run.runlock",
             "bench.cluster", "bench.cluster.slurm", "bench.cluster.k8s", "bench.run.process",
             # what `bench run` imports before it holds back torch's device backends (bench.run.process)
             "bench.run.sweep", "bench.run.planning", "bench.run.runner", "bench.trackers.contention"]  # fmt: skip
    assert frameworks_after(f"for m in {light!r}: __import__(m)") == "[]"


def test_the_plan_of_a_cpu_run_at_fp32_imports_no_framework(tmp_path):
    """bench run's parent asks the CPU backend only what needs no torch (its devices, its reasons) until a cell asks
    for bf16: a CPU run starts without torch (bench.backends.cpu)."""
    suite = tmp_path / "s.toml"
    suite.write_text('backend = "cpu"\nworkloads = ["torch-convnet", "lightning-convnet"]\nprecisions = ["fp32"]\n')
    run = ["run", "--suite", str(suite), "--results-dir", str(tmp_path / "results"), "--dry-run"]
    assert frameworks_after(f"from bench import cli\nassert cli.main({run!r}) == 0") == "[]"


def test_every_folder_of_bench_says_what_it_owns():
    """A package's ``__init__`` opens with what it holds, and bench's top level holds packages and the two base
    modules only: the folders show the way."""
    for init in sorted((ROOT / "bench").rglob("__init__.py")):
        if "suites" in init.parts:
            continue  # data: the packaged suite files
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init.relative_to(ROOT)}: say what the package owns in its docstring"
    loose = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py", "errors.py", "text.py"], loose
