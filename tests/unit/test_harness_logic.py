"""Pure logic of the harness: timer, statistics, aggregation, config, store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from distbench.config import RunConfig, SuiteConfig, load_suite
from distbench.errors import UserError
from distbench.harness.aggregate import aggregate_run
from distbench.harness.torchrun import diagnose_failure
from distbench.measurement.records import parse_rank_lines
from distbench.measurement.stats import median_ci95, summarize
from distbench.measurement.stragglers import Straggler
from distbench.measurement.timer import PhaseTimer
from distbench.registry import check_run, expand_suite, resolved_threads
from distbench.store.db import SCHEMA_VERSION, open_store, orchestrator
from distbench.store.result import RunResult


def test_phase_timer_phases_sum_to_step_time() -> None:
    timer = PhaseTimer()
    timer.start_step()
    for phase in ("data", "forward", "backward", "update"):
        sum(range(2000))
        timer.mark(phase)
    timer.move("backward", "comm", 1e9)  # moving more than there is moves all of it
    step_time, phases = timer.end_step()
    assert phases["backward"] == 0.0 and phases["comm"] > 0
    assert sum(phases.values()) == pytest.approx(step_time)


def test_median_ci_contains_median_and_narrows() -> None:
    values = [float(v) for v in range(1, 102)]
    low, high = median_ci95(values)
    assert low <= 51 <= high
    wide = median_ci95(values[:11])
    assert (wide[1] - wide[0]) / 11 > (high - low) / 101
    summary = summarize(values)
    assert summary.median == 51 and summary.p90 == pytest.approx(91)


def _rank(
    rank: int, times: list[float], role: str = "worker", samples: int = 8, lost: bool = False
) -> Any:
    lines = [f'{{"kind": "meta", "role": "{role}"}}']
    lines += [
        f'{{"kind": "step", "step": {i}, "warmup": {str(i == 0).lower()}, "t": 0, '
        f'"step_time": {t}, "samples": {samples}, "phases": {{"forward": {t / 2}, '
        f'"backward": {t / 2}}}, "loss": 1.5}}'
        for i, t in enumerate(times)
    ]
    extra = '{"lost": "killed by SIGKILL"}' if lost else "{}"
    lines.append(f'{{"kind": "summary", "peak_rss_bytes": 100, "extra": {extra}}}')
    return parse_rank_lines(lines, rank)


def test_sync_aggregation_takes_the_iteration_period_not_the_slowest_jittered_step() -> None:
    """Two parameter-server workers whose step boundaries fall at different points of a
    2 s iteration: each step lasts 1 or 3 s, alternately. The period is 2 s; the slowest
    worker's step of every iteration would say 3."""
    records = {
        0: _rank(0, [9.0, 1.0, 3.0, 1.0, 3.0, 1.5]),
        1: _rank(1, [9.0, 3.0, 1.0, 3.0, 1.0, 2.5]),
    }
    result = aggregate_run(records, synchronous=True)
    assert result.step_time_median == pytest.approx(2.0)  # warm-up step 0 excluded
    assert result.throughput_median == pytest.approx(16 / 2.0)
    assert result.governing_rank == 1
    assert sum(result.breakdown.values()) == pytest.approx(result.step_time_mean)


def test_async_aggregation_adds_worker_throughputs() -> None:
    records = {
        0: _rank(0, [9.0, 1.0, 1.0]),
        1: _rank(1, [9.0, 2.0, 2.0]),
        2: _rank(2, [0.1, 0.1, 0.1], role="server"),
    }
    result = aggregate_run(records, synchronous=False)
    assert result.throughput_median == pytest.approx(8 / 1.0 + 8 / 2.0)  # the server is no worker
    assert len(result.per_rank) == 3


def test_async_throughput_is_what_the_workers_did_together() -> None:
    """Three workers at 1, 1 and 10 s per step, 8 samples each: 8 + 8 + 0.8 = 16.8
    samples/s (a median of pooled N x samples / step said 24)."""
    records = {r: _rank(r, [9.0] + [t] * 6) for r, t in enumerate([1.0, 1.0, 10.0])}
    result = aggregate_run(records, synchronous=False)
    assert result.throughput_median == pytest.approx(16.8)
    assert result.step_jitter_low <= 16.8 <= result.step_jitter_high


def test_a_lost_async_worker_counts_for_the_time_it_was_alive() -> None:
    records = {
        0: _rank(0, [9.0] + [1.0] * 8),
        1: _rank(1, [9.0] + [1.0] * 8),
        2: _rank(2, [9.0] + [1.0] * 2, lost=True),  # lost after 2 of the others' 8 seconds
    }
    result = aggregate_run(records, synchronous=False)
    assert result.throughput_median == pytest.approx(8 + 8 + 8 * 2 / 8)


def test_torn_last_line_is_ignored() -> None:
    records = parse_rank_lines(['{"kind": "meta", "role": "worker"}', '{"kind": "st'], 0)
    assert records.steps == []


def test_config_validation_messages() -> None:
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        RunConfig(model="lenet5", batch_size=0)
    with pytest.raises(UserError, match="unknown strategy 'x'"):
        check_run(RunConfig(model="lenet5", strategy="x"))
    with pytest.raises(UserError, match="exactly 1 worker"):
        check_run(RunConfig(model="lenet5", strategy="sequential", workers=2))
    with pytest.raises(UserError, match="unknown setting"):
        RunConfig.from_dict({"model": "lenet5", "colour": "blue"})


def test_threads_default_to_cores_over_processes() -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=2)
    assert resolved_threads(cfg, cores=8) == 4
    assert resolved_threads(cfg, cores=1) == 1
    assert resolved_threads(cfg.replace(threads=3), cores=8) == 3


def test_suite_expands_matrix_and_runs_sequential_once(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'models = ["lenet5", "resnet18"]\nstrategies = ["sequential", "ddp"]\n'
        "workers = [1, 2]\nsteps = 4\n"
    )
    runs = expand_suite(load_suite(path))
    assert [(r.model, r.strategy, r.workers) for r in runs][:3] == [
        ("lenet5", "sequential", 1),
        ("lenet5", "ddp", 1),
        ("lenet5", "ddp", 2),
    ]
    assert len(runs) == 6 and all(r.steps == 4 for r in runs)
    with pytest.raises(UserError, match="unknown strategy"):
        expand_suite(SuiteConfig(["lenet5"], ["nope"], [1]))
    path.write_text("models = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_suite(path)


@pytest.mark.parametrize(
    "suite", sorted((Path(__file__).parents[2] / "suites").glob("*.toml")), ids=lambda p: p.name
)
def test_every_shipped_suite_expands_and_its_user_models_load(suite: Path) -> None:
    from distbench.models import load_user_model_class

    runs = expand_suite(load_suite(suite))
    assert runs
    for model in {r.model for r in runs if ".py:" in r.model}:
        assert load_user_model_class(model)().__class__.__name__ == model.rpartition(":")[2]


def test_seeds_are_an_axis_of_the_matrix(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('models = ["lenet5"]\nstrategies = ["ddp"]\nworkers = [2]\nseeds = [3, 4]\n')
    assert [(r.workers, r.seed) for r in expand_suite(load_suite(path))] == [(2, 3), (2, 4)]
    with pytest.raises(UserError, match="either --seed or --seeds"):
        expand_suite(SuiteConfig(["lenet5"], ["ddp"], [2], {"seed": 1}, seeds=[1, 2]))
    with pytest.raises(UserError, match="repeats a seed"):
        expand_suite(SuiteConfig(["lenet5"], ["ddp"], [2], seeds=[1, 1]))


def _row(run_id: str, strategy: str, workers: int, throughput: float) -> RunResult:
    return RunResult.from_row(
        {
            "run_id": run_id,
            "status": "ok",
            "created_at": run_id,
            "model": "m",
            "dataset": "synthetic",
            "strategy": strategy,
            "framework": "torch",
            "workers": workers,
            "global_batch": 8 * workers,
            "local_batch": 8,
            "scaling": "weak",
            "throughput_median": throughput,
            "breakdown": {"forward": 1.0},
            "config": {},
            "env": {},
        }
    )


def test_store_migrates_and_computes_speedup_against_sequential(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db")
    assert store.schema_version() == SCHEMA_VERSION
    store.insert(_row("1", "ddp", 1, 90.0))
    store.insert(_row("2", "sequential", 1, 100.0))
    store.insert(_row("3", "ddp", 2, 150.0))
    rows = store.with_scaling(store.query(strategy="ddp"))
    assert [r.baseline_run_id for r in rows] == ["2", "2"]
    assert rows[1].speedup == pytest.approx(1.5)
    assert rows[1].efficiency == pytest.approx(0.75)
    assert rows[1].breakdown == {"forward": 1.0}
    store.close()


def test_speedup_baseline_shares_every_timing_setting(tmp_path: Path) -> None:
    """A --input-size 64 or --device cuda run is never divided by a default CPU run."""
    store = open_store(tmp_path / "r.db")
    seq = _row("1", "sequential", 1, 100.0)
    seq.config = {"device": "auto", "input_size": None}
    big = _row("2", "ddp", 2, 150.0)
    big.config = {"device": "auto", "input_size": 64}
    cuda = _row("3", "ddp", 2, 900.0)
    cuda.config = {"device": "cuda", "input_size": None}
    cpu = _row("4", "ddp", 2, 180.0)
    cpu.config = {"device": "cpu", "input_size": None}  # auto on a host without a GPU
    for row in (seq, big, cuda, cpu):
        store.insert(row)
    scaled = {r.run_id: r for r in store.with_scaling(store.query())}
    assert scaled["4"].baseline_run_id == "1" and scaled["4"].speedup == pytest.approx(1.8)
    for unmatched in ("2", "3"):
        assert scaled[unmatched].speedup is None and scaled[unmatched].baseline_run_id is None
        assert (scaled[unmatched].baseline or "").startswith("none: no measured one-worker run")
    store.close()


def test_store_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(UserError, match="newer distbench"):
        open_store(path)


def test_stored_adapter_runs_take_the_new_strategy_names(tmp_path: Path) -> None:
    """A database written before the one vocabulary (schema 4) is renamed when opened:
    the strategy column and the stored configuration alike; PyTorch's runs are untouched."""
    from distbench.store.result import RunResult

    path = tmp_path / "old.db"
    store = open_store(path)
    for run_id, framework, strategy in [
        ("a", "tensorflow", "allreduce"),
        ("b", "mxnet", "ps-async"),
        ("c", "torch", "ps-sync-join"),
    ]:
        store.insert(
            RunResult(
                run_id=run_id, status="ok", created_at="2026-01-01", model="lenet5",
                dataset="synthetic", strategy=strategy, framework=framework, workers=2,
                config={"strategy": strategy, "framework": framework},
            )
        )  # fmt: skip
    store.close()
    with sqlite3.connect(path) as db:  # as a schema-4 store wrote them
        db.execute("UPDATE runs SET strategy = 'sync', config = json_set(config, "
                   "'$.strategy', 'sync') WHERE run_id = 'a'")  # fmt: skip
        db.execute("UPDATE runs SET strategy = 'async' WHERE run_id = 'b'")
        db.execute("PRAGMA user_version = 4")
    store = open_store(path)
    rows = {r.run_id: r for r in store.query()}
    assert (rows["a"].strategy, rows["a"].config["strategy"]) == ("allreduce", "allreduce")
    assert rows["b"].strategy == "ps-async" and rows["c"].strategy == "ps-sync-join"
    assert [r.run_id for r in store.query(strategy="sync")] == ["a"]  # the old name finds it
    store.close()


def _timed_rank(rank: int, backward: float, comm: float, host: str) -> Any:
    lines = [f'{{"kind": "meta", "role": "worker", "host": "{host}"}}']
    for i in range(4):
        phases = {"data": 0.001, "forward": 0.01, "backward": backward, "comm": comm}
        lines.append(
            json.dumps(
                {
                    "kind": "step",
                    "step": i,
                    "warmup": i == 0,
                    "t": 100.0 + i,
                    "step_time": sum(phases.values()),
                    "samples": 8,
                    "phases": phases,
                }
            )
        )
    return parse_rank_lines(lines, rank)


def test_ddp_wait_for_the_slowest_rank_is_separated_and_the_rank_named() -> None:
    """Rank 1's backward ends 10 ms after rank 0's: 10 of rank 0's 12 ms of exposed
    communication is waiting for rank 1, not transfer."""
    records = {0: _timed_rank(0, 0.020, 0.012, "a"), 1: _timed_rank(1, 0.030, 0.002, "b")}
    result = aggregate_run(records, synchronous=True)
    by_rank = {r["rank"]: r["breakdown"] for r in result.per_rank}
    assert by_rank[0]["wait"] == pytest.approx(0.010)
    assert by_rank[0]["comm"] == pytest.approx(0.002)
    assert by_rank[1]["wait"] == pytest.approx(0.0)
    slowest = result.extra["slowest_rank"]
    assert slowest["rank"] == 1 and slowest["host"] == "b"
    assert slowest["behind_s"] == pytest.approx(0.010)
    assert slowest["others_wait_s"] == pytest.approx(0.010)
    assert "slowest rank 1 on b: 10.0 ms per step" in Straggler(**slowest).sentence()


def test_async_runs_name_no_slowest_rank() -> None:
    records = {0: _timed_rank(0, 0.020, 0.012, "a"), 1: _timed_rank(1, 0.030, 0.002, "b")}
    assert "slowest_rank" not in aggregate_run(records, synchronous=False).extra


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"strategy": "ddp", "partition": "profiled"},
            "--partition profiled does not apply to ddp",
        ),
        (
            {"strategy": "ddp", "servers": "sharded"},
            "read by ps-sync-join, ps-sync-split, ps-async",
        ),
        (
            {"framework": "tensorflow", "strategy": "sync", "ps_semaphore": True},
            r"--ps-semaphore does not apply to allreduce \(tensorflow\): it is read by "
            r"ps-sync-join, ps-sync-split, ps-async \(with --framework torch\)",
        ),
        ({"framework": "mxnet", "strategy": "sync", "servers": "sharded"}, "--servers sharded"),
        (
            {"strategy": "model-parallel", "microbatches": 2},
            "read by pipeline-gpipe, pipeline-1f1b",
        ),
    ],
)
def test_a_setting_the_strategy_does_not_read_is_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        check_run(RunConfig(model="lenet5", workers=2, **settings))


def test_a_suite_setting_applies_to_the_strategies_that_read_it() -> None:
    suite = SuiteConfig(["lenet5"], ["ddp", "ps-async"], [2], {"servers": "sharded"})
    ddp, ps = expand_suite(suite)
    assert ddp.servers == "central" and ps.servers == "sharded"  # ddp stores no sharding
    with pytest.raises(UserError, match="--servers does not apply to ddp"):
        expand_suite(SuiteConfig(["lenet5"], ["ddp"], [2], {"servers": "sharded"}))
    with pytest.raises(UserError, match="--workers must be at least 1, got 0"):
        expand_suite(SuiteConfig(["lenet5"], ["sequential"], [0]))


def test_a_run_whose_distbench_died_is_marked_interrupted_on_the_next_open(
    tmp_path: Path,
) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = open_store(tmp_path / "r.db")
    dead = _row("dead", "ddp", 2, 1.0)
    alive = _row("alive", "ddp", 2, 1.0)
    elsewhere = _row("elsewhere", "ddp", 2, 1.0)
    me = orchestrator()
    for row, who in (
        (dead, {**me, "pid": gone.pid}),
        (alive, me),
        (elsewhere, {**me, "host": socket.gethostname() + "-other"}),
    ):
        row.status, row.extra = "running", {"orchestrator": who}
        store.insert(row)
    store.close()
    store = open_store(tmp_path / "r.db")
    status = {r.run_id: (r.status, r.error or "") for r in store.query()}
    store.close()
    assert status["dead"][0] == "failed" and status["dead"][1].startswith("interrupted: ")
    assert status["alive"] == ("running", "") and status["elsewhere"] == ("running", "")


TORCHRUN_SUMMARY = """Failures:
  <NO_OTHER_FAILURES>
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_10:00:00
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -15 (pid: 4242)
"""


def test_a_lost_server_is_blamed_not_the_workers_torchrun_stopped(tmp_path: Path) -> None:
    (tmp_path / "launcher.log").write_text(TORCHRUN_SUMMARY)
    lost = {"kind": "summary", "rank": 2, "extra": {"lost": "worker process 7 killed by SIGKILL"}}
    (tmp_path / "rank2.jsonl").write_text(json.dumps(lost) + "\n")
    cause = diagnose_failure(tmp_path)
    assert cause.startswith("rank 2 died: worker process 7 killed by SIGKILL"), cause


def test_without_a_lost_rank_the_signalled_rank_is_named(tmp_path: Path) -> None:
    (tmp_path / "launcher.log").write_text(TORCHRUN_SUMMARY)
    assert diagnose_failure(tmp_path) == "rank 1 died: killed by SIGTERM"


def test_a_suites_user_model_path_is_relative_to_the_suite_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    path = tmp_path / "s.toml"
    path.write_text(
        'models = ["lenet5", "models/net.py:Net", "/abs/net.py:Net"]\nstrategies = ["ddp"]\n'
    )
    models = load_suite(path).models
    assert models == [
        "lenet5",
        f"{(tmp_path / 'models' / 'net.py').resolve()}:Net",
        "/abs/net.py:Net",
    ]
