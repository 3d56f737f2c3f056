"""Validation math on given numbers: relative errors, Spearman, best configuration, the
step-time model on a hand-made profile, the latency/bandwidth fit, stored profiles."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from distbench.cli.main import main
from distbench.cli.validate import render
from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.predict.accuracy import (
    ValidationReport,
    ValidationRow,
    best_configurations,
    median_round,
    ranks,
    rebased_speedups,
    relative_error,
    spearman,
    summarize,
)
from distbench.predict.core import Case, compute_times, predict_case
from distbench.profiling.profiles import (
    LinkFit,
    LoadedAllReduce,
    Profile,
    StepTimes,
    contention_pairs,
    find_profile,
    find_profile_row,
    load_profile,
    save_profile,
)
from distbench.registry import strategy_facts
from distbench.workflows.validate import validate_configs

# --- errors, ranks, Spearman -----------------------------------------------------------------


def test_relative_error_signed_and_missing() -> None:
    assert relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert relative_error(0.8, 1.0) == pytest.approx(-0.2)
    assert relative_error(None, 1.0) is None
    assert relative_error(1.0, None) is None
    assert relative_error(1.0, 0.0) is None


def test_ranks_average_ties() -> None:
    assert ranks([10.0, 30.0, 20.0]) == [1.0, 3.0, 2.0]
    assert ranks([5.0, 1.0, 5.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1 2 3 4 5, y = 2 1 4 3 5: d² = 1+1+1+1+0 = 4, rho = 1 - 6·4/(5·24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    # ties: x ranks 1.5 1.5 3, y ranks 1 2 3 -> Pearson of the ranks = sqrt(3)/2
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)


def test_spearman_degenerate() -> None:
    assert spearman([1.0], [2.0]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


# --- rows, best configuration, summary ------------------------------------------------------


def row(
    strategy: str,
    workers: int,
    pred: float,
    meas: float,
    model: str = "m",
    batch: int = 32,
    p_speedup: float | None = None,
    m_speedup: float | None = None,
) -> ValidationRow:
    """A compared row with time per step ``pred``/``meas`` and throughput ``batch·N/step``."""
    return ValidationRow(
        model=model,
        dataset="synthetic",
        strategy=strategy,
        workers=workers,
        batch_size=batch,
        threads=1,
        servers="central",
        status="ok",
        run_id="r",
        profile_id=1,
        predicted_step=pred,
        measured_step=meas,
        step_error=relative_error(pred, meas),
        predicted_throughput=batch * workers / pred,
        measured_throughput=batch * workers / meas,
        predicted_speedup=p_speedup,
        measured_speedup=m_speedup,
        speedup_error=relative_error(p_speedup, m_speedup),
        formula="",
    )


def test_best_configuration_per_workload() -> None:
    rows = [
        row("sequential", 1, 1.0, 1.0),
        row("ddp", 2, 1.5, 1.2),  # ddp best in both
        row("sequential", 1, 1.0, 1.0, model="k"),
        row("ddp", 2, 1.5, 2.5, model="k"),
    ]
    picks = best_configurations(rows)
    assert [(p.workload, p.predicted, p.measured, p.matches) for p in picks] == [
        ("m/synthetic/b32", "m ddp x2", "m ddp x2", True),
        ("k/synthetic/b32", "k ddp x2", "k sequential x1", False),
    ]
    # k: ddp x2 measured 64/2.5 = 25.6 samples/s against sequential's 32/1.0 = 32
    assert picks[0].regret == 0.0 and picks[1].regret == pytest.approx(1 - 25.6 / 32)
    text = render(ValidationReport(rows, summarize(rows)))
    assert "WRONG, 20.0% below the measured best's throughput" in text


def test_median_round_reports_the_middle_measurement_with_all_rounds() -> None:
    rounds = [row("ddp", 2, 1.0, 1.6), row("ddp", 2, 1.1, 1.0), row("ddp", 2, 0.9, 1.2)]
    chosen = median_round(rounds)
    # throughputs 40, 64 and 53.3 samples/s: the median is the third round, paired with
    # its own prediction (taken right before that run)
    assert (chosen.predicted_step, chosen.measured_step) == (0.9, 1.2)
    assert chosen.round_throughputs == pytest.approx([40.0, 64.0, 64 / 1.2])
    failed = replace(rounds[0], measured_throughput=None, status="run failed")
    assert median_round([failed, rounds[1]]).measured_step == 1.0
    assert median_round([failed]) is failed
    text = render(ValidationReport([chosen], summarize([chosen])))
    assert "each by its median of 3 rounds" in text


def test_speedups_of_median_rounds_are_over_the_median_sequential_round() -> None:
    seq = row("sequential", 1, 1.0, 1.0, p_speedup=1.0, m_speedup=1.0)
    ddp = row("ddp", 2, 1.0, 1.6, p_speedup=2.0, m_speedup=3.5)  # over another round's
    rebased = rebased_speedups([seq, ddp])
    # ddp: 64/1.6 = 40 samples/s over sequential's 32/1.0
    assert rebased[1].measured_speedup == pytest.approx(1.25)
    assert rebased[1].speedup_error == pytest.approx(2.0 / 1.25 - 1)
    assert rebased[0].measured_speedup == pytest.approx(1.0)
    assert rebased_speedups([ddp]) == [ddp]  # no sequential run: left as stored


def test_rounds_below_one_are_refused(db_path: Path) -> None:
    with pytest.raises(UserError, match="--rounds must be at least 1"):
        validate_configs([], str(db_path), rounds=0)


def test_summary_on_given_numbers() -> None:
    rows = [
        row("sequential", 1, 1.1, 1.0, p_speedup=1.0, m_speedup=1.0),  # +10 %
        row("ddp", 2, 1.2, 1.5, p_speedup=1.25, m_speedup=1.0),  # -20 %
        row("ps-async", 2, 3.15, 3.0, p_speedup=0.7, m_speedup=0.7),  # +5 %
        replace(
            row("ps-sync-join", 2, 1.0, 1.0),
            status="no measurement",
            measured_step=None,
            step_error=None,
            measured_throughput=None,
        ),
    ]
    s = summarize(rows)
    assert (s.configurations, s.compared) == (4, 3)
    assert s.median_abs_step_error == pytest.approx(0.10)
    assert s.max_abs_step_error == pytest.approx(0.20)
    assert s.median_abs_speedup_error == pytest.approx(0.0)
    # throughputs 32/1.1, 64/1.2, 64/3.15 vs 32/1.0, 64/1.5, 64/3.0: same order
    assert s.spearman == pytest.approx(1.0)
    assert s.best_overall_predicted == s.best_overall_measured == "m ddp x2"
    assert s.best_matches
    text = render(ValidationReport(rows, s))
    assert "median |error| 10.0%" in text and "max |error| 20.0%" in text
    assert "measured best: yes" in text


def test_summary_gives_the_errors_of_faithful_emulations_beside_all() -> None:
    rows = [
        row("ddp", 4, 1.05, 1.0),  # +5 %
        replace(row("ddp", 8, 0.6, 1.0), faithful=False),  # -40 %, cores saturated
        row("ps-async", 4, 0.9, 1.0),  # -10 %
    ]
    s = summarize(rows)
    assert s.max_abs_step_error == pytest.approx(0.40)
    assert s.faithful[0] == 2
    assert s.faithful[1] == pytest.approx(0.075) and s.faithful[2] == pytest.approx(0.10)
    text = render(ValidationReport(rows, s))
    assert "where the emulation was faithful (2 of 3): median |error| 7.5%" in text
    assert "faithful" not in render(ValidationReport(rows[:1], summarize(rows[:1])))


def test_summary_without_comparisons() -> None:
    s = summarize([])
    assert s.compared == 0 and s.median_abs_step_error is None and s.spearman is None
    assert not s.best_matches


# --- the model on a hand-made profile -------------------------------------------------------


def steps(k: int, t: int, grad: float, grad_max: float | None = None) -> StepTimes:
    """fwd = grad/3, bwd = 2grad/3, data = 0.01, update = 0.02."""
    gm = grad if grad_max is None else grad_max
    return StepTimes(
        processes=k,
        threads=t,
        batch_size=32,
        data=0.01,
        forward=grad / 3,
        backward=2 * grad / 3,
        update=0.02,
        t_grad=grad,
        t_grad_max=gm,
        t_step=grad + 0.03,
        t_step_max=gm + 0.03,
        repeats=5,
    )


def make_profile(**changes: object) -> Profile:
    link = LinkFit("p2p", 2, 1e-4, 1e9, [1024, 4096], [1e-4, 1e-4])
    ring = LinkFit("allreduce", 2, 5e-5, 5e8, [1024, 4096], [1e-4, 1e-4])
    base = Profile(
        model="m",
        dataset="synthetic",
        batch_size=32,
        threads=2,
        workers=2,
        repeats=5,
        created_at="2026-01-01T00:00:00+00:00",
        cores=2,
        host="h",
        torch_version="x",
        input_size=None,
        t_grad=0.3,
        t_forward=0.1,
        t_backward=0.2,
        t_data=0.01,
        t_update=0.02,
        t_grad_split=[0.3, 0.18],
        weight_bytes=40_000_000,
        grad_bytes=40_000_000,
        tensors=10,
        t_comm=0.05,
        p2p=link,
        allreduce=ring,
        contended=[steps(1, 2, 0.3), steps(1, 1, 0.5), steps(2, 1, 0.6, 0.66)],
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def case(
    strategy: str, workers: int, threads: int, synchronous: bool = True, servers: str = "central"
) -> Case:
    return Case(
        model="m",
        dataset="synthetic",
        strategy=strategy,
        workers=workers,
        batch_size=32,
        local_batch=32,
        global_batch=32 * workers,
        threads=threads,
        servers=servers,
        steps=10,
        synchronous=synchronous,
        prediction_model=strategy_facts("torch", strategy).prediction_model,
    )


def test_sequential_is_gradient_plus_data_and_update() -> None:
    pred = predict_case(case("sequential", 1, 2), make_profile())
    assert pred is not None
    assert pred.step_time == pytest.approx(0.3 + 0.03)
    assert pred.throughput == pytest.approx(32 / 0.33)


def test_ddp_two_workers_uses_slowest_worker_ring_and_overlap() -> None:
    p = make_profile(cores=4)  # 2 workers x 1 thread leave two cores free: buckets overlap
    pred = predict_case(case("ddp", 2, 1), p)
    assert pred is not None
    t_ar = 2 * 5e-5 + 40_000_000 / 5e8  # 2(N-1)α + 2(N-1)/N·bytes/β at N = 2
    overlap = 1 - f.DDP_DEFAULT_BUCKET_BYTES / 40_000_000
    expected = 0.66 + max(0.0, t_ar - overlap * 0.44) + 0.03
    assert pred.step_time == pytest.approx(expected)
    assert pred.throughput == pytest.approx(64 / expected)


def test_ddp_on_a_saturated_host_adds_the_whole_all_reduce() -> None:
    pred = predict_case(case("ddp", 2, 1), make_profile())  # 2 x 1 thread on 2 cores
    assert pred is not None
    t_ar = 2 * 5e-5 + 40_000_000 / 5e8
    assert pred.step_time == pytest.approx(0.66 + t_ar + 0.03)
    assert "no spare core" in pred.formula


def test_ddp_behind_a_shaped_link_overlaps_even_on_a_full_host() -> None:
    p = make_profile(network="bandwidth=100mbit")  # 2 x 1 thread on 2 cores, wire-bound
    pred = predict_case(case("ddp", 2, 1), p)
    assert pred is not None
    t_ar = 2 * 5e-5 + 40_000_000 / 5e8
    overlap = 1 - f.DDP_DEFAULT_BUCKET_BYTES / 40_000_000
    assert pred.step_time == pytest.approx(0.66 + max(0.0, t_ar - overlap * 0.44) + 0.03)


def test_ddp_machinery_joins_every_ddp_step_even_with_one_rank() -> None:
    p = make_profile(ddp_overhead=0.004)
    one = predict_case(case("ddp", 1, 2), p)
    sequential = predict_case(case("sequential", 1, 2), p)
    assert one is not None and sequential is not None
    assert one.step_time == pytest.approx(sequential.step_time + 0.004)  # no tie to break
    two = predict_case(case("ddp", 2, 1), p)
    assert two is not None
    assert two.step_time == pytest.approx(0.66 + 2 * 5e-5 + 40_000_000 / 5e8 + 0.03 + 0.004)


def test_a_slightly_negative_measured_ddp_machinery_counts_as_none_in_both_engines() -> None:
    from distbench.predict.simulated import simulate_case

    samples = [{"data": 0.0, "forward": 0.1, "backward": 0.2, "update": 0.0}]
    noisy = make_profile(ddp_overhead=-0.0007, phase_samples=samples, network="bandwidth=1gbit")
    clean = replace(noisy, ddp_overhead=0.0)
    assert noisy.ddp_machinery == 0.0 and noisy.ddp_overhead == -0.0007  # stored as measured
    c = replace(case("ddp", 4, 1), compute="profile", host_links=True)
    a, b = predict_case(c, noisy), predict_case(c, clean)
    assert a is not None and b is not None and a.step_time == b.step_time
    sim = simulate_case(c, noisy, steps=3)
    assert sim.spec.ring is not None and sim.spec.ring.machinery == 0.0


def test_behind_a_shaped_link_the_ring_runs_at_the_largest_all_reduces_rate() -> None:
    from distbench.predict.core import ring_alpha_beta
    from distbench.predict.simulated import simulate_case

    # the small sizes passed above the rate from the bucket: the fit says 13 MB/s, the
    # largest all-reduce moved 24 MB in 2.0 s less its two messages' latency: 12 MB/s
    sweep = LinkFit("allreduce", 2, 1e-3, 13e6, [1_000_000, 24_000_000], [0.06, 2.002])
    loopback = make_profile(allreduce=sweep)
    shaped = replace(loopback, network="bandwidth=100mbit")
    assert ring_alpha_beta(loopback) == (1e-3, 13e6)
    assert ring_alpha_beta(shaped) == pytest.approx((1e-3, 12e6))
    samples = [{"data": 0.0, "forward": 0.1, "backward": 0.2, "update": 0.0}]
    c = replace(case("ddp", 4, 1), compute="profile", host_links=True)
    profile = replace(shaped, phase_samples=samples, grad_ready=[], param_bytes=[])
    formulas = predict_case(c, profile)
    sim = simulate_case(c, profile, steps=3)
    assert formulas is not None and sim.spec.ring is not None
    assert sim.spec.ring.beta == pytest.approx(12e6)
    assert formulas.comm == pytest.approx(f.ring_allreduce_time(4, 40_000_000, 1e-3, 12e6))


def test_ddp_on_a_saturated_host_uses_the_all_reduce_measured_after_a_step() -> None:
    loaded = [LoadedAllReduce(processes=2, threads=1, seconds=0.2, repeats=9)]
    p = make_profile(ddp_overhead=0.004, allreduce_loaded=loaded)
    pred = predict_case(case("ddp", 2, 1), p)
    assert pred is not None
    assert pred.step_time == pytest.approx(0.66 + 0.2 + 0.03 + 0.004)
    assert pred.comm == pytest.approx(0.2) and "measured" in pred.formula
    free = predict_case(case("ddp", 2, 1), replace(p, cores=4))  # a spare core: the ring
    assert free is not None and "bucket overlap" in free.formula
    shaped = predict_case(case("ddp", 2, 1), replace(p, network="bandwidth=100mbit"))
    assert shaped is not None and "ring" in shaped.formula


def test_profile_round_trips_ddp_costs() -> None:
    loaded = [LoadedAllReduce(processes=2, threads=1, seconds=0.2, repeats=9)]
    p = make_profile(ddp_overhead=0.004, allreduce_loaded=loaded)
    back = Profile.from_dict(p.to_dict())
    assert back == p and back.loaded_allreduce(2, 1) == 0.2
    assert back.loaded_allreduce(2, 2) is None
    old = p.to_dict()
    del old["ddp_overhead"], old["allreduce_loaded"]  # a profile stored before they were
    assert Profile.from_dict(old).ddp_overhead is None


def test_ps_sync_join_central_two_workers() -> None:
    pred = predict_case(case("ps-sync-join", 2, 1), make_profile())
    assert pred is not None
    t = 0.66 + 0.03  # slowest worker's gradient + data + update
    assert pred.step_time == pytest.approx(((3 * 0.05 + t) + (4 * 0.05 + t)) / 2)


def test_ps_protocol_overhead_joins_every_transfer() -> None:
    pred = predict_case(case("ps-sync-join", 2, 1), make_profile(ps_overhead=0.01))
    assert pred is not None
    t, c = 0.66 + 0.03, 0.05 + 0.01  # t_comm + the protocol's cost per transfer
    assert pred.step_time == pytest.approx(((3 * c + t) + (4 * c + t)) / 2)
    ddp = predict_case(case("ddp", 2, 1), make_profile(ps_overhead=0.01))
    assert ddp == predict_case(case("ddp", 2, 1), make_profile())  # all-reduce: not PS


def test_ps_async_one_worker_is_two_transfers_per_step() -> None:
    pred = predict_case(case("ps-async", 1, 1, synchronous=False), make_profile())
    assert pred is not None
    assert pred.step_time == pytest.approx(0.5 + 0.03 + 2 * 0.05)


def test_ps_async_two_workers_per_worker_step_and_summed_throughput() -> None:
    pred = predict_case(case("ps-async", 2, 1, synchronous=False), make_profile())
    assert pred is not None
    t, d = 0.6 + 0.03, 20  # async: the median process, not the slowest
    total = f.async_central_estimate(t, 0.05, 2, d)
    assert pred.step_time == pytest.approx(total / (d / 2))
    assert pred.throughput == pytest.approx(64 / pred.step_time)


def test_sharded_server_uses_distributed_formula() -> None:
    pred = predict_case(case("ps-sync-join", 2, 1, servers="sharded"), make_profile())
    assert pred is not None
    assert pred.step_time == pytest.approx(2 * 0.05 * 1 / 2 + 0.66 + 0.03)


def test_unmodelled_strategy_has_no_prediction() -> None:
    assert predict_case(case("pipeline-gpipe", 2, 1), make_profile()) is None


def test_missing_contention_is_extrapolated_and_labelled() -> None:
    times, label = compute_times(make_profile(), 4, 1)
    assert "extrapolated" in label
    # one process at 2 threads scaled to 1 thread (x2) and 4 processes on 2 cores (x2)
    assert times.t_grad == pytest.approx(0.3 * 4)


def test_contention_pairs_cover_workers_and_central_server() -> None:
    assert contention_pairs(2, 2) == [(1, 1), (1, 2), (2, 1)]
    assert contention_pairs(1, 8) == [(1, 4), (1, 8)]


# --- latency/bandwidth fit --------------------------------------------------------------------


def test_fit_recovers_alpha_and_beta() -> None:
    from distbench.profiling.primitives import fit_latency_bandwidth, link_fit, sweep_sizes

    sizes = sweep_sizes(64 * 2**20)
    assert sizes[0] == 1024 and sizes[-1] == 64 * 2**20 and len(sizes) == 9
    alpha, beta = 50e-6, 2e9
    times = [alpha + s / beta for s in sizes]
    a, b = fit_latency_bandwidth(sizes, times)
    assert a == pytest.approx(alpha, rel=1e-6) and 1 / b == pytest.approx(beta, rel=1e-6)
    ring = link_fit("allreduce", 2, sizes, times)  # t = 2α' + bytes/β' at 2 ranks
    assert ring.alpha == pytest.approx(alpha / 2) and ring.beta == pytest.approx(beta)


def test_fit_clamps_negative_latency_and_rejects_bad_input() -> None:
    from distbench.profiling.primitives import fit_latency_bandwidth

    a, b = fit_latency_bandwidth([1000, 2000, 4000], [0.9e-6, 2.0e-6, 4.1e-6])
    assert a >= 0 and b > 0
    with pytest.raises(UserError):
        fit_latency_bandwidth([1000], [1e-3])
    with pytest.raises(UserError):
        fit_latency_bandwidth([1000, 1000], [1e-3, 2e-3])


def test_the_held_probe_warms_a_connection_for_its_time_within_a_cap() -> None:
    from distbench.profiling.primitives import HELD_PROBE_MAX_WARM_SENDS, warming_sends

    # 2.9 MB at 1 Gbit/s crosses in about 23 ms: two seconds are 87 sends
    assert warming_sends(0.0232, 2.0) == 87
    # on loopback a send takes a millisecond: the cap, not two thousand sends
    assert warming_sends(0.001, 2.0) == HELD_PROBE_MAX_WARM_SENDS
    # no warming asked, or a first send that took no measurable time: none
    assert warming_sends(0.0232, 0.0) == 0
    assert warming_sends(0.0, 2.0) == 0


# --- stored profiles --------------------------------------------------------------------------


def test_profile_round_trip_and_estimate_reads_it(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = make_profile()
    assert save_profile(db_path, profile) >= 1
    newer = replace(profile, created_at="2026-02-01T00:00:00+00:00", t_grad=0.25)
    save_profile(db_path, newer)
    assert find_profile(db_path, "m", "synthetic", 32, 2) == newer
    assert find_profile(db_path, "m", batch_size=64) is None
    assert load_profile(db_path, "m")["t_grad"] == 0.25
    code = main(
        [
            "estimate",
            "--model",
            "m",
            "--db",
            str(db_path),
            "--type",
            "sync-join",
            "--workers",
            "2",
            "--output",
            "csv",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3  # header + N = 1, 2


def test_missing_profile_is_user_error(db_path: Path) -> None:
    with pytest.raises(UserError, match="distbench profile"):
        load_profile(db_path, "m")
    save_profile(db_path, make_profile())
    with pytest.raises(UserError, match="no stored profile of model 'lenet5'"):
        load_profile(db_path, "lenet5")


def test_profiles_are_found_by_the_network_their_links_crossed(db_path: Path) -> None:
    loopback = make_profile()
    shaped = replace(
        loopback, created_at="2026-02-01T00:00:00+00:00", t_comm=0.5, network="bandwidth=100mbit"
    )
    save_profile(db_path, loopback)
    save_profile(db_path, shaped)
    assert find_profile(db_path, "m") == shaped  # by default: the newest, any network
    found = find_profile_row(db_path, "m", network=None)
    assert found is not None and found[0] == loopback
    found = find_profile_row(db_path, "m", network="bandwidth=100mbit")
    assert found is not None and found[0].t_comm == 0.5
    assert find_profile_row(db_path, "m", network="bandwidth=1gbit") is None


def test_sweep_limit_shrinks_behind_a_slow_link() -> None:
    from distbench.profiling.calibrate import DEFAULT_SWEEP_MAX, sweep_limit

    assert sweep_limit(None, None) == DEFAULT_SWEEP_MAX
    assert sweep_limit(4096, "bandwidth=100mbit") == 4096  # asked for: kept
    assert sweep_limit(None, "bandwidth=100mbit") == 25_000_000  # 2 s at 12.5 MB/s
    assert sweep_limit(None, "bandwidth=10gbit") == DEFAULT_SWEEP_MAX  # capped at 64 MiB


def test_a_wrong_pick_inside_the_measurement_noise_is_tied_not_wrong() -> None:
    close = [
        replace(row("sequential", 1, 1.0, 1.00), measured_throughput_ci=(30.0, 34.0)),
        replace(row("ddp", 1, 0.9, 1.02), measured_throughput_ci=(29.0, 33.0)),
    ]
    pick = best_configurations(close)[0]
    assert (pick.predicted, pick.measured, pick.matches, pick.tied) == (
        "m ddp x1",
        "m sequential x1",
        False,
        True,
    )
    apart = [
        replace(close[0], measured_throughput_ci=(31.5, 34.0)),
        replace(close[1], measured_throughput_ci=(29.0, 31.0)),
    ]
    assert not best_configurations(apart)[0].tied
    unknown = [replace(r, measured_throughput_ci=None) for r in close]
    assert not best_configurations(unknown)[0].tied  # no interval, no benefit of the doubt
    s = summarize(close)
    assert not s.best_matches and s.best_within_noise
    text = render(ValidationReport(close, s))
    assert "tied: 2.0% below the measured best's throughput" in text
    assert "measured best: no; within the measurement's noise: yes" in text


def test_contention_group_stops_together_when_a_process_is_descheduled() -> None:
    """Process 1 paused right after each barrier, for longer than process 0's step: both
    still time the same steps and nobody waits at a barrier until the deadline."""
    import threading

    from distbench.profiling.calibrate import StepPlan, timed_steps

    plan = StepPlan(warmup=1, repeats=3, min_seconds=0.0, max_repeats=5, timeout=10.0)
    barrier, stop = threading.Barrier(2), threading.Event()
    results: dict[int, list[dict[str, float]]] = {}

    def process(index: int) -> None:
        pause = (lambda: time.sleep(0.05)) if index == 1 else None
        results[index] = timed_steps(
            index, plan, barrier, stop, lambda: {"forward": 0.001}, after_barrier=pause
        )

    threads = [threading.Thread(target=process, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert len(results[0]) == len(results[1]) == 3


def test_expected_max_of_draws() -> None:
    assert f.expected_max([1.0, 2.0], 1) == pytest.approx(1.5)
    assert f.expected_max([1.0, 2.0], 2) == pytest.approx(1.75)  # 1/4 both low
    assert f.expected_max([3.0], 16) == pytest.approx(3.0)
    values = [0.1 * k for k in range(1, 11)]
    grows = [f.expected_max(values, n) for n in (1, 2, 4, 8, 16)]
    assert grows == sorted(grows) and grows[-1] < 1.0 + 1e-12


def emulated_case(strategy: str, workers: int, compute: str, servers: str = "central") -> Case:
    facts = strategy_facts("torch", strategy)
    return replace(case(strategy, workers, 1, facts.synchronous, servers), compute=compute)


def test_emulated_prediction_uses_the_profile_alone() -> None:
    samples = [
        {"data": 0.0, "forward": 0.1, "backward": 0.2, "update": 0.0},
        {"data": 0.0, "forward": 0.2, "backward": 0.4, "update": 0.0},
    ]
    p = make_profile(phase_samples=samples, network="bandwidth=1gbit")
    one = predict_case(emulated_case("sequential", 1, "profile"), p)
    assert one is not None and one.step_time == pytest.approx(0.45)  # the mean step
    # eight synchronous workers wait for the slowest of eight draws: 1 - 1/2^8 of the slow one
    ddp = predict_case(emulated_case("ddp", 8, "profile"), p)
    assert ddp is not None
    slowest = 0.3 + 0.3 * (1 - 0.5**8)
    assert ddp.compute == pytest.approx(slowest)
    assert "slowest of 8 draws" in ddp.formula
    # the contention measurements (2 x 1 threads: 0.6 s) never enter an emulated prediction
    assert "threads" not in ddp.formula
    fixed = predict_case(emulated_case("ps-async", 4, "0.5"), p)
    assert fixed is not None and fixed.compute == pytest.approx(0.5)
    split = predict_case(replace(emulated_case("ps-sync-split", 2, "0.6"), local_batch=16), p)
    assert split is not None and split.compute == pytest.approx(0.6 * 0.18 / 0.3)


def test_a_central_server_behind_its_own_link_carries_every_workers_transfer() -> None:
    # a 100 MB/s link sustained (largest sweep point), a faster burst for small transfers
    link = LinkFit("p2p", 2, 0.0, 3e8, [1024, 100_000_000], [1e-5, 1.0])
    p = make_profile(p2p=link, network="bandwidth=1gbit", ps_overhead=0.001)
    sync = predict_case(replace(emulated_case("ps-sync-join", 4, "0.6"), host_links=True), p)
    assert sync is not None
    shared = 4 * 40_000_000 / 1e8  # four transfers of the weights through one link
    assert sync.step_time == pytest.approx(0.6 + 2 * shared + 2 * 0.001)
    fast = predict_case(replace(case("ps-async", 2, 1, synchronous=False), host_links=True), p)
    slow = predict_case(replace(case("ps-async", 16, 1, synchronous=False), host_links=True), p)
    assert fast is not None and slow is not None
    # sixteen workers queue at the server's link: at least its 16 transfers a step, at
    # most that plus one worker's own cycle (its compute and its two transfers)
    own_cycle = slow.compute + 2 * 0.4 + 2 * 0.001
    assert 16 * 0.4 <= slow.step_time <= 16 * 0.4 + own_cycle
    assert "mean value analysis" in slow.formula
    assert fast.step_time < slow.step_time
    thesis = predict_case(case("ps-sync-join", 4, 1), p)  # one host: the thesis' estimate
    assert thesis is not None and "eq. 4.11" in thesis.formula


def test_an_asynchronous_run_is_compared_by_the_mean_step_its_throughput_implies() -> None:
    from distbench.predict.accuracy import measured_step
    from distbench.store.result import RunResult

    def row(strategy: str) -> RunResult:
        # steps of a convoy: most long, a few short; their median is not their mean
        return RunResult(
            run_id="r",
            status="ok",
            created_at="",
            model="m",
            dataset="synthetic",
            strategy=strategy,
            framework="torch",
            workers=4,
            throughput_median=64.0,
            step_time_median=2.5,
        )

    assert measured_step(case("ps-async", 4, 1, synchronous=False), row("ps-async")) == 2.0
    assert measured_step(case("ps-sync-join", 4, 1), row("ps-sync-join")) == 2.5
    no_throughput = replace(row("ps-async"), throughput_median=None)
    assert measured_step(case("ps-async", 4, 1, synchronous=False), no_throughput) is None


def test_ddp_buckets_fill_in_the_order_backward_readies_the_gradients() -> None:
    from distbench.predict import formulas as f

    mib = 2**20
    # parameters() order: early layers first; backward readies the last layers first
    ready = [0.9, 0.8, 0.3, 0.1, 0.0]
    sizes = [4 * mib, 4 * mib, 20 * mib, 20 * mib, 0.5 * mib]
    buckets = f.ddp_buckets(ready, sizes)
    # first bucket closes at 1 MiB (here on the 20 MiB gradient), the next at 25 MiB
    assert buckets == [(0.1, 20.5 * mib), (0.9, 28 * mib)]
    assert sum(b for _, b in buckets) == sum(sizes)
    with pytest.raises(UserError):
        f.ddp_buckets([0.1], [1.0, 2.0])


def test_early_large_buckets_hide_the_ring_behind_backward() -> None:
    from distbench.predict import formulas as f

    n, alpha, beta = 4, 0.0, 100e6
    sizes = [40e6, 1e6]
    late = f.ddp_exposed_allreduce(f.ddp_buckets([1.0, 1.0], sizes), 0.1, 1.0, n, alpha, beta)
    early = f.ddp_exposed_allreduce(f.ddp_buckets([0.05, 1.0], sizes), 0.1, 1.0, n, alpha, beta)
    whole = f.ring_allreduce_time(n, sum(sizes), alpha, beta)
    assert late == pytest.approx(whole)  # nothing ready before backward ends
    # the 40 MB bucket ready at 5 % of backward is reduced behind it; only the last is left
    assert early == pytest.approx(f.ring_allreduce_time(n, 1e6, alpha, beta))


def test_the_ddp_prediction_uses_when_each_gradient_is_ready() -> None:
    c = replace(case("ddp", 4, 1), compute="profile", host_links=True)
    samples = [{"data": 0.0, "forward": 0.1, "backward": 0.2, "update": 0.0}]
    uniform = make_profile(phase_samples=samples, network="bandwidth=1gbit", cores=8)
    ordered = replace(uniform, grad_ready=[0.9, 0.02], param_bytes=[1_000_000, 39_000_000])
    a, b = predict_case(c, uniform), predict_case(c, ordered)
    assert a is not None and b is not None
    assert b.step_time < a.step_time  # most bytes ready early: more of the ring hidden
    assert "2 buckets as backward readies their gradients" in b.formula


def test_an_older_profile_gets_its_gradient_sizes_from_the_model() -> None:
    from distbench.config import RunConfig
    from distbench.profiling.grad_ready import with_model_sizes

    cfg = RunConfig(model="lenet5", dataset="digits", strategy="ddp", workers=2)
    older = make_profile(grad_ready=[0.5] * 10)
    filled = with_model_sizes(older, cfg)
    assert len(filled.param_bytes) == 10 and sum(filled.param_bytes) > 0
    assert filled.gradient_order is not None
    assert with_model_sizes(make_profile(grad_ready=[0.5] * 3), cfg).param_bytes == []
    assert sum(filled.server_tensor_bytes) == sum(filled.param_bytes)  # lenet5: no buffers


def test_the_largest_shard_of_the_greedy_split_sets_a_sharded_servers_pace() -> None:
    from distbench.predict import formulas as f

    assert f.shard_loads([10, 5, 4, 3, 8], 2) == [18, 12]
    n, total, rate = 4, 40e6, 10e6
    equal = f.sync_sharded_links(0.5, [total / n] * n, rate, 0.0)
    assert equal == pytest.approx(f.sync_distributed(0.5, total / rate, n))  # eq. 4.12
    # one tensor of 70 % of the weights: its unit sends it to the 3 others, each way
    lopsided = f.sync_sharded_links(0.5, [28e6, 4e6, 4e6, 4e6], rate, 0.001)
    assert lopsided == pytest.approx(0.5 + 2 * (3 * 28e6 / rate + 0.001))


def test_the_busiest_link_of_the_greedy_split_sets_an_async_sharded_servers_pace() -> None:
    from distbench.predict import formulas as f

    n, total, rate, overhead = 4, 40e6, 10e6, 0.002
    equal = f.async_sharded_links(0.5, [total / n] * n, rate, overhead)
    assert equal == pytest.approx(f.sync_distributed(0.5, total / rate + overhead, n))
    # the unit of the 28 MB tensor: its push of the other 12 MB and 3 replies of 28 MB
    lopsided = f.async_sharded_links(0.5, [28e6, 4e6, 4e6, 4e6], rate, overhead)
    assert lopsided == pytest.approx(0.5 + (12e6 + 3 * 28e6) / rate + 1.5 * overhead)


def sharded_on_host_links(strategy: str) -> tuple[Case, Profile, Profile]:
    """A 4-unit sharded case behind 1 Gbit/s links, a profile without the tensors' sizes
    (equal shares) and one whose first tensor holds 75 % of the weights."""
    c = replace(case(strategy, 4, 1, servers="sharded"), compute="profile", host_links=True)
    samples = [{"data": 0.0, "forward": 0.1, "backward": 0.2, "update": 0.0}]
    base = make_profile(phase_samples=samples, network="bandwidth=1gbit", ps_overhead=0.0)
    lopsided = replace(base, server_tensor_bytes=[30_000_000, 4_000_000, 3_000_000, 3_000_000])
    return c, base, lopsided


def test_an_async_sharded_prediction_uses_the_split_of_the_models_tensors() -> None:
    c, base, lopsided = sharded_on_host_links("ps-async")
    a, b = predict_case(c, base), predict_case(c, lopsided)
    assert a is not None and b is not None
    assert "2(N-1)/N" in a.formula and "busiest link's push" in b.formula
    assert b.step_time > a.step_time


def test_a_sharded_prediction_uses_the_split_of_the_models_tensors() -> None:
    from distbench.predict.simulated import simulate_case

    c, base, lopsided = sharded_on_host_links("ps-sync-join")
    a, b = predict_case(c, base), predict_case(c, lopsided)
    assert a is not None and b is not None
    assert b.step_time > a.step_time and "busiest link's shards" in b.formula
    assert lopsided.shard_bytes(4) == [30e6, 4e6, 3e6, 3e6]
    sim = simulate_case(c, lopsided, steps=5)
    assert sim.spec.shards() == (30e6, 4e6, 3e6, 3e6)
    assert sim.prediction.step_time == pytest.approx(b.step_time, rel=0.02)


def test_a_profile_of_a_model_that_cannot_be_built_is_used_as_it_is() -> None:
    from distbench.config import RunConfig
    from distbench.profiling.grad_ready import with_model_sizes

    older = make_profile(grad_ready=[0.5] * 10)
    cfg = RunConfig(model="gone/model.py:Net", strategy="ddp", workers=2)
    assert with_model_sizes(older, cfg) is older
