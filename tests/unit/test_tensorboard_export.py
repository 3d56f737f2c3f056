"""``results --export tensorboard``: every stored run is written with TensorBoard's writer
and read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from distbench.errors import UserError
from distbench.store.result import Round, RunResult
from distbench.store.tensorboard import export_tensorboard

CURVE = [
    {"step": 10, "train_s": 0.5, "loss": 1.9, "accuracy": 0.4, "eval_s": 0.01},
    {"step": 20, "train_s": 1.0, "loss": 0.8, "accuracy": 0.85, "eval_s": 0.01},
]


def _run(tmp_path: Path) -> RunResult:
    """A run trained to a target, with a round directory holding its rank's step lines."""
    round_dir = tmp_path / "runs" / "r1"
    round_dir.mkdir(parents=True)
    lines = [{"kind": "meta", "rank": 0, "role": "worker"}] + [
        {
            "kind": "step", "rank": 0, "step": k, "warmup": k == 0, "t": 1000.0 + k,
            "step_time": 0.05 + k / 100, "samples": 32,
            "phases": {"forward": 0.02, "backward": 0.03},
        }
        for k in range(3)
    ]  # fmt: skip
    (round_dir / "rank0.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return RunResult(
        run_id="20261206-070000-abcdef",
        status="ok",
        created_at="2026-12-06T07:00:00+00:00",
        model="lenet5",
        dataset="digits",
        strategy="ddp",
        framework="torch",
        workers=2,
        global_batch=64,
        local_batch=32,
        throughput_median=1234.5,
        step_time_median=0.052,
        speedup=1.8,
        efficiency=0.9,
        peak_rss_bytes=300 * 2**20,
        governing_rank=0,
        rounds=[Round(1, "ok", str(round_dir), "t", 1.0, throughput=1234.5).to_dict()],
        config={"model": "lenet5", "strategy": "ddp", "workers": 2, "lr": 0.02, "seed": 3},
        env={"torch": "2.13.0+cpu"},
        extra={"convergence": {"time_to_accuracy_s": 1.0, "final_accuracy": 0.85, "curve": CURVE}},
        resources={"t0": 999.0, "ranks": {"0": {"t": [0, 0.25], "cpu_percent": [90.0, 95.0],
                                                "rss_bytes": [2**20, 2**21]}}},
    )  # fmt: skip


def _read(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_a_run_reads_back_with_its_parameters_figures_and_curves(tmp_path: Path) -> None:
    row = _run(tmp_path)
    (written,) = export_tensorboard([row], tmp_path / "tb")
    assert written == tmp_path / "tb" / row.run_id
    events = _read(written)
    value = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    assert value["figures/samples_per_s"][0].value == pytest.approx(1234.5)
    assert value["figures/speedup"][0].value == pytest.approx(1.8)
    assert value["convergence/time_to_accuracy_s"][0].value == pytest.approx(1.0)
    accuracy = value["convergence/accuracy"]
    assert [(e.step, round(e.value, 3)) for e in accuracy] == [(10, 0.4), (20, 0.85)]
    # training time as wall time: TensorBoard's relative axis reads it
    assert accuracy[1].wall_time - accuracy[0].wall_time == pytest.approx(0.5)
    assert [e.step for e in value["steps/step_time_s"]] == [0, 1, 2]
    assert [round(e.value, 3) for e in value["steps/backward_s"]] == [0.03] * 3
    assert [e.value for e in value["resources/rank0/cpu_percent"]] == [90.0, 95.0]
    assert value["rounds/samples_per_s"][0].step == 1
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["model"].string_value == "lenet5"
    assert hparams["workers"].number_value == 2 and hparams["lr"].number_value == 0.02
    assert hparams["status"].string_value == "ok"
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"seed": 3' in config


def test_a_failed_run_carries_its_error_and_no_figures(tmp_path: Path) -> None:
    row = _run(tmp_path)
    row.status, row.error, row.throughput_median, row.rounds = "failed", "rank 1 died", None, []
    (written,) = export_tensorboard([row], tmp_path / "tb")
    events = _read(written)
    assert "figures/samples_per_s" not in events.Tags()["scalars"]
    error = events.Tensors("error/text_summary")[0].tensor_proto.string_val[0].decode()
    assert error == "rank 1 died"


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "tb"
    blocker.write_text("")
    with pytest.raises(UserError, match="exists and is not a directory"):
        export_tensorboard([_run(tmp_path)], blocker)
