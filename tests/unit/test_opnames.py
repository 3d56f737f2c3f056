"""Operator profiles across frameworks : common names, the in-venv event
helpers, the launcher's summary of a worker's events, and explain across frameworks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from distbench.analysis.explain import explain_rows, merge_phases, unseparated_groups
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.frameworks import launch
from distbench.profiling.operators import (
    operators_file,
    profile_window,
    profiled_throughout,
    profiling_warning,
    trace_file,
)
from distbench.profiling.opnames import COMMON_NAMES, common_name, common_profile
from distbench.registry import check_run
from distbench.store.result import RunResult

WORKERS = Path(__file__).resolve().parents[2] / "src" / "distbench" / "frameworks"


def load_worker_module(name: str) -> ModuleType:
    """A worker program as its venv loads it (by path); none imports its framework at the
    top, so this works in the main environment."""
    spec = importlib.util.spec_from_file_location(f"test_{name}", WORKERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def profile(phases: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "unit": "seconds per step",
        "phases": {
            phase: {
                "self_s": sum(ops.values()),
                "ops": [
                    {"name": n, "self_s": s, "total_s": s, "calls": 1.0}
                    for n, s in sorted(ops.items(), key=lambda kv: -kv[1])
                ],
            }
            for phase, ops in phases.items()
        },
        "top": [],
    }


def row(
    run_id: str,
    framework: str,
    breakdown: dict[str, float],
    operators: dict[str, Any],
    **extra: Any,
) -> RunResult:
    return RunResult.from_row(
        {
            "run_id": run_id,
            "status": "ok",
            "created_at": f"2026-01-01T00:{run_id}",
            "model": "lenet5",
            "dataset": "synthetic",
            "strategy": "sequential",
            "framework": framework,
            "workers": 1,
            "threads_per_worker": 2,
            "local_batch": 32,
            "throughput_median": 100.0,
            "breakdown": breakdown,
            "operators": operators,
            "resources": None,
            "oversubscribed": False,
            "extra": extra,
        }
    )


# ------------------------------------------------------------------------------ names


def test_the_same_work_has_one_name_in_every_framework() -> None:
    assert {
        common_name("torch", "aten::convolution_backward"),
        common_name("tensorflow", "Conv2DBackpropFilter"),
        common_name("tensorflow", "Conv2DBackpropInput"),
        common_name("mxnet", "_backward_Convolution"),
    } == {"conv2d_backward"}
    assert {
        common_name("torch", "aten::native_batch_norm"),
        common_name("tensorflow", "FusedBatchNormV3"),
        common_name("mxnet", "BatchNorm"),
    } == {"batch_norm"}
    assert common_name("horovod", "aten::addmm") == "matmul"  # Horovod runs PyTorch


def test_keras_batch_norm_operators_are_told_by_their_scope() -> None:
    tf_worker = load_worker_module("tf_worker")
    forward = tf_worker.op_label(
        "functional_1/layer1_0_bn2_1/moments/SquaredDifference:SquaredDifference",
        "SquaredDifference",
    )
    backward = tf_worker.op_label(
        "gradient_tape/functional_1/stem_1_1/batchnorm/mul_1/Sum:Sum", "Sum"
    )
    elsewhere = tf_worker.op_label("functional_1/fc_1/Sum:Sum", "Sum")
    assert (forward, backward, elsewhere) == (
        "BatchNorm[SquaredDifference]",
        "BatchNormGrad[Sum]",
        "Sum",
    )
    assert [common_name("tensorflow", n) for n in (forward, backward, elsewhere)] == [
        "batch_norm",
        "batch_norm_backward",
        "sum",
    ]


def test_an_unknown_operator_keeps_its_framework_prefix() -> None:
    assert common_name("tensorflow", "ReadVariableOp") == "tensorflow:ReadVariableOp"
    assert common_name("horovod", "aten::index") == "torch:aten::index"


def test_every_common_name_is_used_by_more_than_one_framework_or_documented() -> None:
    """A common name only one framework uses compares nothing; those must be deliberate."""
    users: dict[str, set[str]] = {}
    for framework, table in COMMON_NAMES.items():
        for common in table.values():
            users.setdefault(common, set()).add(framework)
    single = {name for name, frameworks in users.items() if len(frameworks) == 1}
    docs = (Path(__file__).resolve().parents[2] / "docs" / "frameworks.md").read_text()
    assert all(f"`{name}`" in docs for name in single), single


def test_common_profile_adds_up_operators_that_share_a_name() -> None:
    native = profile(
        {
            "backward": {
                "Conv2DBackpropFilter": 0.03,
                "Conv2DBackpropInput": 0.02,
                "ReadVariableOp": 0.001,
            },
            "update": {"AssignSubVariableOp": 0.004},
        }
    )
    common = common_profile(native, "tensorflow")
    backward = {op["name"]: op for op in common["phases"]["backward"]["ops"]}
    assert backward["conv2d_backward"]["self_s"] == pytest.approx(0.05)
    assert backward["conv2d_backward"]["native"] == ["Conv2DBackpropFilter", "Conv2DBackpropInput"]
    assert "tensorflow:ReadVariableOp" in backward
    # the cross-phase list is built from every phase's operators
    assert [op["name"] for op in common["top"]][:2] == ["conv2d_backward", "sgd_update"]
    assert common["names"] == "common"


def test_every_operator_of_the_update_phase_is_the_sgd_update() -> None:
    """Each framework spells SGD with other primitives; the phase says what they are."""
    torch_update = common_profile(
        profile({"update": {"Optimizer.step#SGD.step": 0.4, "aten::add_": 0.1}}), "torch"
    )
    tf_update = common_profile(profile({"update": {"Mul": 0.1, "Sub": 0.05}}), "tensorflow")
    for common in (torch_update, tf_update):
        assert [op["name"] for op in common["phases"]["update"]["ops"]] == ["sgd_update"]
    assert torch_update["phases"]["update"]["ops"][0]["self_s"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ explain

TORCH = row(
    "01",
    "torch",
    {"data": 0.002, "forward": 0.004, "backward": 0.008, "update": 0.001},
    profile(
        {
            "forward": {"aten::mkldnn_convolution": 0.002, "aten::addmm": 0.001},
            "backward": {
                "aten::convolution_backward": 0.005,
                "aten::mm": 0.001,
                "aten::threshold_backward": 0.001,
            },
            "update": {"aten::add_": 0.0008},
        }
    ),
)
TF = row(
    "02",
    "tensorflow",
    {"data": 0.001, "backward": 0.030, "update": 0.002},
    profile(
        {
            "backward": {
                "_FusedConv2D": 0.005,
                "Conv2DBackpropFilter": 0.012,
                "Conv2DBackpropInput": 0.006,
                "MatMul": 0.003,
                "ReluGrad": 0.001,
            },
            "update": {"AssignSubVariableOp": 0.0015},
        }
    ),
    unseparated_phases={"backward": ["forward", "backward"]},
)


def test_phases_one_framework_cannot_separate_are_added_up_in_both() -> None:
    groups = unseparated_groups(TORCH, TF)
    assert groups == [{"forward", "backward"}]
    assert merge_phases(TORCH.breakdown, groups) == pytest.approx(
        {"data": 0.002, "forward+backward": 0.012, "update": 0.001}
    )


def test_explain_compares_a_tensorflow_run_with_a_pytorch_run_by_common_names() -> None:
    e = explain_rows(TORCH, TF)
    assert [p.name for p in e.phases] == ["data", "forward+backward", "update"]
    assert e.phase == "forward+backward" and e.operator_scope == "all phases"
    ops = {op.name: op for op in e.operators}
    assert ops["conv2d_backward"].a_s == pytest.approx(0.005)
    assert ops["conv2d_backward"].b_s == pytest.approx(0.018)  # filter + input gradients
    assert e.operators[0].name == "conv2d_backward"
    assert "conv2d_backward (+13.0 ms)" in e.conclusion
    assert any("common names" in note for note in e.notes)
    assert any(note.startswith("forward+backward: a run times") for note in e.notes)


def test_runs_of_one_framework_keep_native_names_and_phases() -> None:
    other = row("03", "torch", {**TORCH.breakdown, "backward": 0.02}, TORCH.operators or {})
    e = explain_rows(TORCH, other)
    assert e.phase == "backward" and e.operator_scope == "backward"
    assert all(not op.name.startswith(("conv2d", "torch:")) for op in e.operators)


# ------------------------------------------------------------------------------ in-venv helpers


def test_self_times_subtract_nested_events_on_the_same_thread_only() -> None:
    common = load_worker_module("adapter_common")
    events = common.self_times(
        [
            ("outer", 0.0, 100.0, "t1"),
            ("inner", 10.0, 40.0, "t1"),
            ("inner", 50.0, 60.0, "t1"),
            ("other", 10.0, 90.0, "t2"),
        ]
    )
    by = {(e["name"], e["thread"], e["start_s"]): e for e in events}
    assert by[("outer", "t1", 0.0)]["self_us"] == pytest.approx(60.0)
    assert by[("outer", "t1", 0.0)]["total_us"] == pytest.approx(100.0)
    assert by[("other", "t2", 1e-5)]["self_us"] == pytest.approx(80.0)


@pytest.mark.parametrize(("warmup", "steps"), [(3, 20), (0, 2), (1, 1), (2, 5)])
def test_the_adapters_window_is_the_pytorch_profilers(warmup: int, steps: int) -> None:
    common = load_worker_module("adapter_common")
    window = profile_window(warmup, steps)
    mine = common.OpWindow({"wait": window.wait, "warmup": window.warmup, "active": window.active})
    calls = range(warmup + steps)
    assert [s for s in calls if mine.touched(s)] == list(window.touched)
    assert [s for s in calls if mine.recorded(s)] == list(window.recorded)
    assert mine.starts(window.touched[0]) and mine.ends(window.recorded[-1])
    ended = [s for s in calls if mine.after_step(s, 100.0 + s, 0.5)]
    assert ended == [window.recorded[-1]]
    assert mine.span == (100.0 + window.recorded[0], 100.5 + window.recorded[-1])
    assert mine.step_extra(window.touched[0]) == {"profiled": True}


def test_mxnet_trace_events_pair_begin_and_end_per_thread() -> None:
    mx_worker = load_worker_module("mx_worker")
    trace = [
        {"name": "Convolution", "cat": "operator", "ph": "B", "ts": 1000, "pid": 0, "tid": 1},
        {"name": "FullyConnected", "cat": "operator", "ph": "B", "ts": 1005, "pid": 0, "tid": 2},
        {"name": "Convolution", "cat": "operator", "ph": "E", "ts": 1040, "pid": 0, "tid": 1},
        {"name": "FullyConnected", "cat": "operator", "ph": "E", "ts": 1015, "pid": 0, "tid": 2},
        {"name": "MXNDArrayFree", "cat": "MXNET_C_API", "ph": "b", "ts": 1001},
        {"name": "pick", "cat": "operator", "ph": "X", "ts": 1050, "dur": 4, "pid": 0, "tid": 1},
    ]
    events = {e["name"]: e for e in mx_worker.trace_op_events(trace)}
    assert set(events) == {"Convolution", "FullyConnected", "pick"}
    assert events["Convolution"]["self_us"] == 40 and events["FullyConnected"]["self_us"] == 10
    assert events["Convolution"]["start_s"] == pytest.approx(1000 / 1e6)


# ------------------------------------------------------------------------------ launcher


def test_the_launcher_summarizes_a_workers_events_by_its_step_records(tmp_path: Path) -> None:
    cfg = RunConfig(
        model="lenet5",
        framework="mxnet",
        strategy="sequential",
        workers=1,
        steps=4,
        warmup=1,
        profile_ops=True,
    )
    window = profile_window(cfg.warmup, cfg.steps)
    steps = []
    for step in range(cfg.warmup + cfg.steps):
        start = 100.0 + step
        steps.append(
            {
                "kind": "step",
                "step": step,
                "warmup": step < 1,
                "t": start,
                "step_time": 0.5,
                "samples": 32,
                "rank": 0,
                "phases": {"forward": 0.2, "backward": 0.3},
            }
        )
    (tmp_path / "rank0.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    events = []
    for step in window.recorded:
        events += [
            {
                "name": "Convolution",
                "start_s": 100.0 + step + 0.05,
                "self_us": 1000.0,
                "total_us": 1000.0,
                "thread": "7",
            },
            {
                "name": "_backward_Convolution",
                "start_s": 100.0 + step + 0.25,
                "self_us": 3000.0,
                "total_us": 3000.0,
                "thread": "7",
            },
        ]
    (tmp_path / "op_events_rank0.json").write_text(
        json.dumps({"framework": "mxnet", "source": "test", "events": events})
    )
    assert launch.summarize_op_events(cfg, tmp_path) == [operators_file(tmp_path, 0)]
    summary = json.loads(operators_file(tmp_path, 0).read_text())
    assert summary["framework"] == "mxnet"
    assert summary["phases"]["forward"]["ops"][0]["name"] == "Convolution"
    assert summary["phases"]["forward"]["ops"][0]["self_s"] == pytest.approx(1e-3)
    assert summary["phases"]["backward"]["ops"][0]["self_s"] == pytest.approx(3e-3)
    trace = json.loads(trace_file(tmp_path, 0).read_text())  # none was there: one is written
    assert len(trace["traceEvents"]) == len(events)


def test_profile_ops_is_refused_where_a_framework_cannot_profile() -> None:
    check_run(
        RunConfig(
            model="lenet5",
            framework="tensorflow",
            strategy="allreduce",
            workers=2,
            profile_ops=True,
        )
    )
    with pytest.raises(UserError, match="--profile-ops is not available"):
        check_run(
            RunConfig(
                model="lenet5",
                framework="tensorflow",
                strategy="ps-async",
                workers=2,
                profile_ops=True,
            )
        )
    assert launch.profile_job(
        RunConfig(model="lenet5", framework="mxnet", steps=5, warmup=2, profile_ops=True)
    ) == {"wait": 3, "warmup": 1, "active": 3}
    assert launch.profile_job(RunConfig(model="lenet5", framework="mxnet")) is None


def test_tensorflow_onednn_kernels_have_their_plain_operators_common_names() -> None:
    """TensorFlow with oneDNN on a CPU it supports names its kernels _MklNative... ."""
    assert common_name("tensorflow", "_MklNativeFusedConv2D") == "conv2d"
    assert common_name("tensorflow", "_MklNativeConv2DBackpropFilterWithBias") == (
        "conv2d_backward"
    )
    assert common_name("tensorflow", "_MklNativeConv2DBackpropInput") == "conv2d_backward"
    assert common_name("tensorflow", "_MklMatMul") == "matmul"
    assert common_name("tensorflow", "_MklNativeFusedMatMul") == "matmul"
    assert common_name("tensorflow", "_MklNativeMaxPoolGrad") == "pool_backward"
    assert (
        common_name("tensorflow", "_MklNativeSomethingNew") == "tensorflow:_MklNativeSomethingNew"
    )
    assert common_name("mxnet", "_MklMatMul") == "mxnet:_MklMatMul"  # TensorFlow's rule only


@pytest.mark.parametrize(("steps", "throughout"), [(1, True), (3, True), (4, True), (5, False)])
def test_a_run_whose_every_measured_step_is_profiled_is_told_so(
    steps: int, throughout: bool
) -> None:
    assert profiled_throughout(2, steps) is throughout
    if throughout:
        window = profile_window(2, steps)
        assert set(range(2, 2 + steps)) <= set(window.touched)  # no step timed clean
        assert f"--steps {steps} profiles every measured step" in profiling_warning(steps)
    else:
        assert set(range(2, 2 + steps)) - set(profile_window(2, steps).touched)
