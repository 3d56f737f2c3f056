"""Emulated compute: --compute parsing, plans, waits, gradient release order, resolution
of the replayed profile, the memory check, and where --compute is refused."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import torch

from distbench.compute.emulated import REAL, EmulatedCompute, make_compute, ready_by_size
from distbench.compute.plan import (
    ComputePlan,
    batch_ratio,
    emulation_report,
    normalized_compute,
    parse_compute,
    plan_from_profile,
    plan_from_seconds,
    read_plan,
    unfaithful_reasons,
    write_plan,
)
from distbench.compute.resolve import compute_plan, resolve_compute
from distbench.compute.wait import WaitLog, wait_until
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.harness.capacity import (
    RUNTIME_BYTES,
    STATE_COPIES,
    check_memory,
    estimated_bytes,
    run_bytes,
)
from distbench.models import build_model
from distbench.profiling.profiles import LinkFit, Profile, save_profile
from distbench.registry import check_run


def test_parse_compute_accepts_modes_and_positive_seconds() -> None:
    assert parse_compute("real").mode == "real"
    assert parse_compute("profile").emulated
    assert parse_compute("0.719").seconds == pytest.approx(0.719)
    assert parse_compute("2s").seconds == 2.0
    assert normalized_compute(0.5) == "0.5"
    for bad in ("0", "-1", "nan", "inf", "fast", ""):
        with pytest.raises(UserError, match="--compute must be"):
            parse_compute(bad)


def test_run_config_normalizes_compute_and_refuses_a_profile_id_without_it() -> None:
    assert RunConfig(model="lenet5", compute=0.25)  # type: ignore[arg-type]  # a suite number.compute == "0.25"
    with pytest.raises(UserError, match="--compute-profile needs"):
        RunConfig(model="lenet5", compute_profile=3)


def test_batch_ratio_uses_a_measured_split_else_the_fitted_line() -> None:
    split = [1.0, 0.6, 0.45, 0.35]  # batches 32, 16, 10, 8
    assert batch_ratio(32, split, 32) == 1.0
    assert batch_ratio(32, split, 16) == pytest.approx(0.6)
    between = batch_ratio(32, split, 4)  # below every measured batch: the fitted line
    assert 0.0 <= between < 0.35
    assert batch_ratio(32, [1.0], 8) == pytest.approx(0.25)  # one point: proportional


def test_plan_draws_whole_measured_steps_scaled_to_the_batch() -> None:
    steps = [
        {"data": 0.01, "forward": 0.1, "backward": 0.2, "update": 0.03},
        {"data": 0.02, "forward": 0.3, "backward": 0.6, "update": 0.05},
    ]
    plan = plan_from_profile(7, steps, [], 0.5)
    rng = random.Random(1)
    draws = [plan.draw(rng) for _ in range(200)]
    assert {round(d["forward"], 6) for d in draws} == {0.05, 0.15}
    for d in draws:  # a step's phases stay together; the update does not scale
        assert d["backward"] == pytest.approx(2 * d["forward"])
        assert d["update"] in (0.03, 0.05)
    assert plan.mean("forward") == pytest.approx(0.1)
    with pytest.raises(UserError, match="run `distbench profile` again"):
        plan_from_profile(7, [], [], 1.0)


def test_plan_from_seconds_splits_by_share_and_round_trips(tmp_path: Path) -> None:
    plan = plan_from_seconds(0.9, 1.0)
    assert plan.steps == [
        {"data": 0.0, "forward": 0.3, "backward": pytest.approx(0.6), "update": 0.0}
    ]
    shared = plan_from_seconds(1.0, 0.5, forward_share=0.25, grad_ready=[0.5, 1.0], profile_id=4)
    assert shared.draw(random.Random(0))["backward"] == pytest.approx(0.375)
    write_plan(tmp_path, shared)
    assert read_plan(tmp_path) == shared


def test_wait_until_never_returns_early_and_the_log_measures_errors() -> None:
    start = time.perf_counter()
    end = wait_until(start + 0.02)
    assert end >= start + 0.02
    log = WaitLog()
    log.log(0.1, 0.11)
    log.log(0.2, 0.19)
    summary = log.summary()
    assert summary["waits"] == 2
    assert summary["error_weighted"] == pytest.approx(0.02 / 0.3)
    assert summary["late_max_s"] == pytest.approx(0.01)
    assert WaitLog().summary() == {"waits": 0}


def test_emulation_report_combines_ranks_and_flags_saturated_cores() -> None:
    rank = {
        "source": "profile",
        "profile_id": 2,
        "batch_scale": 1.0,
        "waits": {"waits": 3, "error_weighted": 0.01, "late_max_s": 0.001},
        "backward_releases": {"waits": 9, "error_weighted": 0.02, "late_max_s": 0.002},
    }
    other = {**rank, "waits": {"waits": 3, "error_weighted": 0.03, "late_max_s": 0.004}}
    report = emulation_report([rank, other], cpu_cores=1.9, cores=2)
    assert report["wait_error"] == pytest.approx(0.02)
    assert report["wait_error_max"] == pytest.approx(0.03)
    assert report["release_late"] == pytest.approx(0.02)
    assert report["cpu_saturated"] is True
    assert emulation_report([rank], cpu_cores=0.5, cores=2)["cpu_saturated"] is False
    assert report["faithful"] is False  # saturated
    assert emulation_report([rank], cpu_cores=0.5, cores=2)["faithful"] is True  # 1 % waits
    assert emulation_report([other], cpu_cores=0.5, cores=2)["faithful"] is False  # 3 %


def test_a_saturated_machine_makes_an_emulation_unfaithful() -> None:
    """The kernel's work for the emulated network is charged to no process: the ranks may
    keep half a core busy while the machine is saturated, and the waits are then no
    longer what the profile asked."""
    rank = {"waits": {"waits": 3, "error_weighted": 0.001, "late_max_s": 0.0}}
    busy = emulation_report([rank], cpu_cores=0.5, cores=2, machine_busy=0.95)
    assert busy["machine_saturated"] is True and busy["faithful"] is False
    assert unfaithful_reasons(busy) == ["machine saturated, 95 % busy (kernel work included)"]
    calm = emulation_report([rank], cpu_cores=0.5, cores=2, machine_busy=0.6)
    assert calm["machine_saturated"] is False and calm["faithful"] is True
    assert "machine_busy" not in emulation_report([rank], cpu_cores=0.5, cores=2)


def test_ready_by_size_releases_the_last_parameter_first() -> None:
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (10, 30, 60)]
    ready = ready_by_size(params)
    assert ready == pytest.approx([1.0, 0.9, 0.6])


def test_emulated_backward_releases_every_gradient_in_order_and_trains_nothing() -> None:
    model = build_model("lenet5", 10, 32, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = list(model.parameters())
    ready = [(i + 1) / len(params) for i in range(len(params))][::-1]  # last first
    plan = ComputePlan("test", [{"data": 0.0, "forward": 0.01, "backward": 0.05, "update": 0.0}])
    plan = ComputePlan(plan.source, plan.steps, ready)
    emulation = EmulatedCompute(plan, random.Random(0), local_batch=4)
    emulation.install(model)
    seen: list[int] = []
    for index, param in enumerate(params):
        param.register_post_accumulate_grad_hook(lambda _p, i=index: seen.append(i))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = emulation.next_batch(iter([]), torch.device("cpu"))
    assert x.shape[0] == 4
    loss = torch.nn.CrossEntropyLoss()(model(x), y)
    start = time.perf_counter()
    emulation.backward(loss)
    assert time.perf_counter() - start >= 0.05  # the whole drawn backward time
    emulation.update(optimizer)
    assert seen == list(range(len(params)))[::-1]  # in ready order: last layer first
    for param in params:
        assert param.grad is not None and param.grad.shape == param.shape
        assert float(param.grad.abs().sum()) == 0.0
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), before[name])
    summary = emulation.summary()
    assert summary["waits"]["waits"] == 1  # the forward (data and update are zero)
    assert summary["backward_releases"]["waits"] == len(params) + 1


def test_make_compute_is_real_unless_emulated(tmp_path: Path) -> None:
    assert make_compute("real", tmp_path, "s", 8) is REAL
    write_plan(tmp_path, plan_from_seconds(0.1, 1.0))
    assert make_compute("0.1", tmp_path, "s", 8).emulated


def stored_profile(db: Path, samples: list[dict[str, float]] | None = None) -> int:
    fit = LinkFit("p2p", 2, 1e-4, 1e8, [1024], [1e-4])
    profile = Profile(
        model="lenet5",
        dataset="synthetic",
        batch_size=32,
        threads=2,
        workers=2,
        repeats=3,
        created_at="2026-12-03T00:00:00",
        cores=2,
        host="test",
        torch_version="x",
        input_size=None,
        t_grad=0.03,
        t_forward=0.01,
        t_backward=0.02,
        t_data=0.001,
        t_update=0.001,
        t_grad_split=[0.03, 0.02],
        weight_bytes=250_000,
        grad_bytes=246_000,
        tensors=10,
        t_comm=0.001,
        p2p=fit,
        allreduce=fit,
        phase_samples=samples or [],
        grad_ready=[],
    )
    return save_profile(db, profile)


def test_compute_profile_needs_a_stored_profile_with_samples(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=4, compute="profile")
    with pytest.raises(UserError, match="needs a stored profile"):
        resolve_compute(cfg, db)
    stored_profile(db)  # an old profile, without phase samples
    with pytest.raises(UserError, match="predate emulated compute"):
        resolve_compute(cfg, db)
    samples = [{"data": 0.001, "forward": 0.01, "backward": 0.02, "update": 0.001}]
    pid = stored_profile(db, samples)
    resolved = resolve_compute(cfg, db)
    assert resolved.compute_profile == pid
    plan = compute_plan(resolved, db, 32)
    assert plan is not None and plan.profile_id == pid and plan.steps == samples
    with pytest.raises(UserError, match="no profile with that id"):
        resolve_compute(cfg.replace(compute_profile=pid + 10), db)


def test_compute_seconds_uses_a_profile_when_there_is_one(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cfg = RunConfig(model="lenet5", strategy="ps-sync-split", workers=2, compute="0.6")
    alone = compute_plan(resolve_compute(cfg, db), db, 16)
    assert alone is not None and alone.scale == pytest.approx(0.5) and alone.profile_id is None
    pid = stored_profile(db, [{"data": 0.0, "forward": 0.01, "backward": 0.02, "update": 0.0}])
    plan = compute_plan(resolve_compute(cfg, db), db, 16)
    assert plan is not None and plan.profile_id == pid
    assert plan.scale == pytest.approx(0.02 / 0.03)  # the measured half batch
    assert plan.steps[0]["forward"] == pytest.approx(0.6 / 3)  # the profile's 1:2 share


def test_compute_is_refused_where_it_cannot_be_emulated() -> None:
    check_run(RunConfig(model="lenet5", strategy="ddp", workers=2, compute="0.1"))
    check_run(RunConfig(model="lenet5", strategy="pipeline-gpipe", workers=2, compute="0.1"))
    with pytest.raises(UserError, match=r"does not apply to allreduce \(tensorflow\)"):
        check_run(
            RunConfig(model="lenet5", framework="tensorflow", strategy="allreduce", compute="0.1")
        )
    with pytest.raises(UserError, match="--profile-ops profiles real operators"):
        check_run(RunConfig(model="lenet5", strategy="ddp", compute="0.1", profile_ops=True))


def test_memory_check_refuses_runs_that_do_not_fit() -> None:
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=16)
    state = 100 * 2**20
    assert estimated_bytes(state) == RUNTIME_BYTES + STATE_COPIES * state
    assert run_bytes(cfg, state) == (16, 16 * estimated_bytes(state))
    central = RunConfig(model="lenet5", strategy="ps-async", workers=4)
    server = RUNTIME_BYTES + (STATE_COPIES + 8) * state  # a receive buffer and a snapshot
    assert run_bytes(central, state) == (5, 4 * estimated_bytes(state) + server)
    central_sync = RunConfig(model="lenet5", strategy="ps-sync-join", workers=4)
    server = RUNTIME_BYTES + (STATE_COPIES + 4) * state  # a receive buffer per worker
    assert run_bytes(central_sync, state) == (5, 4 * estimated_bytes(state) + server)
    # sharded servers live in the workers: a shard's buffers per worker, 1/N of the state
    sharded = central.replace(servers="sharded")
    assert run_bytes(sharded, state) == (4, 4 * estimated_bytes(state, STATE_COPIES + 2))
    sharded_sync = central_sync.replace(servers="sharded")
    assert run_bytes(sharded_sync, state) == (4, 4 * estimated_bytes(state, STATE_COPIES + 1))
    check_memory([cfg], lambda c: state, available=100 * 2**30)
    with pytest.raises(UserError, match=r"needs about .* GiB .*use fewer --workers"):
        check_memory([cfg], lambda c: state, available=4 * 2**30)


def test_validate_predicts_from_the_profile_the_runs_replay(tmp_path: Path) -> None:
    from distbench.workflows.validate import validate_configs

    db = tmp_path / "r.db"
    samples = [{"data": 0.001, "forward": 0.01, "backward": 0.02, "update": 0.001}]
    older = stored_profile(db, samples)
    newer = stored_profile(db, samples)
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=4, compute="profile")
    pinned = validate_configs([cfg.replace(compute_profile=older)], str(db), reuse=True)
    assert [row.profile_id for row in pinned.rows] == [older]
    unpinned = validate_configs([cfg], str(db), reuse=True)
    assert [row.profile_id for row in unpinned.rows] == [newer]


def test_validate_reuses_a_configurations_rounds_as_it_measured_them(tmp_path: Path) -> None:
    """With --rounds K a reused configuration is its newest K stored runs, compared as
    measured rounds are: the median round, and the interval over the rounds."""
    from distbench.registry import resolved_threads
    from distbench.store import open_store
    from distbench.store.result import RunResult
    from distbench.workflows.validate import validate_configs

    db = tmp_path / "r.db"
    samples = [{"data": 0.001, "forward": 0.01, "backward": 0.02, "update": 0.001}]
    pid = stored_profile(db, samples)
    cfg = RunConfig(model="lenet5", strategy="ddp", workers=4, compute="profile")
    stored = cfg.replace(compute_profile=pid)
    store = open_store(db)
    for index, throughput in enumerate([500.0, 900.0, 700.0, 800.0]):  # oldest first
        store.insert(
            RunResult.from_row(
                {
                    "run_id": f"run{index}",
                    "status": "ok",
                    "created_at": f"2026-12-06T00:00:0{index}",
                    "model": "lenet5",
                    "dataset": "synthetic",
                    "strategy": "ddp",
                    "framework": "torch",
                    "workers": 4,
                    "threads_per_worker": resolved_threads(stored),
                    "global_batch": 128,
                    "local_batch": 32,
                    "scaling": "weak",
                    "throughput_median": throughput,
                    "step_time_median": 128 / throughput,
                    "config": stored.to_dict(),
                    "env": {},
                }
            )
        )
    store.close()
    three = validate_configs([cfg], str(db), reuse=True, rounds=3).rows[0]
    assert three.measured_throughput == pytest.approx(800.0)  # of 900, 700 and 800
    assert sorted(three.round_throughputs) == [700.0, 800.0, 900.0]
    assert three.measurement_noise is not None
    one = validate_configs([cfg], str(db), reuse=True).rows[0]
    assert one.measured_throughput == pytest.approx(800.0)  # the newest
    assert one.round_throughputs == [800.0]


def test_a_profile_taken_beside_other_load_says_so(tmp_path: Path) -> None:
    from dataclasses import replace

    from distbench.cli.profile import profile_lines
    from distbench.harness.noise import BUSY_CORES
    from distbench.profiling.profiles import find_profile

    db = tmp_path / "r.db"
    stored_profile(db)
    quiet = find_profile(db, "lenet5", "synthetic", 32)
    assert quiet is not None and quiet.outside_load_cores is None  # an older profile
    assert not quiet.beside_other_load
    busy = replace(quiet, outside_load_cores=BUSY_CORES + 0.5)
    assert busy.beside_other_load
    assert any("measured beside other load" in line for line in profile_lines(busy))
    idle = replace(quiet, outside_load_cores=BUSY_CORES / 2)
    assert not any("beside other load" in line for line in profile_lines(idle))
