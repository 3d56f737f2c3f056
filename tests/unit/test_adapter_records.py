"""The in-venv workers write records with the harness's own contract, loaded by path."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from distbench.harness.aggregate import aggregate_run
from distbench.measurement.records import read_run_records

WORKERS = Path(__file__).resolve().parents[2] / "src" / "distbench" / "frameworks"


def test_adapter_records_are_the_harness_records(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("adapter_common_t", WORKERS / "adapter_common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    recorder = common.Recorder(str(tmp_path), 0, "worker", "mxnet", 1)
    timer = common.Phases()
    for step in range(3):
        timer.start_step()
        timer.mark("data")
        timer.mark("backward")
        timer.phases["backward"] -= 0.0  # the loops re-attribute time through ``phases``
        timer.mark("update")
        seconds, phases = timer.end_step()
        recorder.step(step, step == 0, timer.start_wall, seconds, 8, phases, loss=1.0)
    recorder.summary({"kvstore": "local"})
    recorder.error("first line\n  detail\nlast line")
    recorder.close()
    records = read_run_records(tmp_path)[0]
    assert records.meta["framework"] == "mxnet" and records.role == "worker"
    assert [s["step"] for s in records.measured_steps()] == [1, 2]
    assert set(records.steps[0]["phases"]) == {"data", "backward", "update"}
    assert records.summary is not None and records.summary["extra"] == {"kvstore": "local"}
    assert records.errors[0]["error"] == "first line ... last line"
    assert aggregate_run({0: records}, synchronous=True).throughput_median > 0


def test_adapter_common_imports_no_distbench_package() -> None:
    """Loaded by path in a framework's venv, where ``distbench`` is not installed."""
    path = str(WORKERS / "adapter_common.py")
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('c', {path!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert not any(k == 'distbench' or k.startswith('distbench.') for k in sys.modules)\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
