"""Why is run B slower (or faster) than run A? The top-down comparison of study 002.

Where to start: ``explain_rows(a, b)`` takes two stored result rows and walks down the
levels of the 002 method: total step time → local compute vs. communication → the phase
(data, forward, backward, comm, pull, push, wait, update) that accounts for most of the
difference → within that phase, the operators whose self time changed most (when both
runs carry an operator profile from ``--profile-ops``; runs of two frameworks are compared
by common operator names, ``profiling/opnames.py``, and phases that one of them cannot
separate are added up in both first, ``merge_phases``). It returns an ``Explanation``
dataclass with a one-sentence ``conclusion``; nothing here prints (``cli/explain.py``
does) or plots (``report/`` does). ``suite_findings`` applies the same logic to a whole
selection of runs for the report's written summary.

Times are seconds per step. The step time used for the decomposition is the sum of the
stored breakdown (the governing rank's mean over measured steps), so the phases add up to
it exactly; operator times are per profiled step and need not add up to the phase time
(waiting on other ranks or the network is not an operator).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distbench.analysis.convergence import AccuracyGap, accuracy_gap
from distbench.compute.plan import unfaithful_reasons
from distbench.errors import UserError
from distbench.harness.monitor import mean_in_window, stored_emulation
from distbench.measurement.rounds import SAME, ratio_interval, verdict
from distbench.measurement.stragglers import straggler_of
from distbench.measurement.timer import PHASES
from distbench.profiling.opnames import common_profile, operator_framework
from distbench.store import ResultStore
from distbench.store.db import rounds_or_median
from distbench.store.result import RunResult

COMM_PHASES = ("comm", "pull", "push", "wait")
NAMED_OPERATORS = 3
OTHER_PHASE = "other"
SATURATED_PERCENT = 90.0


@dataclass(frozen=True)
class RunSide:
    """One of the two runs, as the comparison shows it."""

    run_id: str
    label: str
    step_time_s: float
    throughput: float | None
    local_batch: int | None
    threads_per_worker: int | None
    profiled: bool


@dataclass(frozen=True)
class Delta:
    """A quantity in A and in B; ``delta_s = b_s - a_s``; ``share`` of the parent delta."""

    name: str
    a_s: float
    b_s: float
    delta_s: float
    share: float | None = None
    partial: bool = False  # an operator missing from one run's top list counted as 0


@dataclass(frozen=True)
class Explanation:
    a: RunSide
    b: RunSide
    delta_s: float
    ratio: float | None
    groups: list[Delta]
    phases: list[Delta]
    phase: str | None
    operators: list[Delta]
    operator_scope: str  # the phase the operators come from, "all phases", or "none"
    notes: list[str] = field(default_factory=list)
    conclusion: str = ""
    #: B's throughput over A's with a bootstrap interval over both runs' rounds, and in
    #: words: faster, slower, no measurable difference (the interval contains 1).
    throughput_ratio: float | None = None
    throughput_ratio_ci: list[float] | None = None
    difference: str = ""
    #: Both runs trained to the same target: B's time to accuracy against A's, split
    #: into throughput and convergence (``analysis/convergence.py``).
    accuracy_gap: AccuracyGap | None = None


def run_label(row: RunResult) -> str:
    return f"{row.model} {row.strategy} ×{row.workers} on {row.framework}"


def _side(row: RunResult) -> RunSide:
    return RunSide(
        run_id=row.run_id,
        label=run_label(row),
        step_time_s=sum((row.breakdown or {}).values()),
        throughput=row.throughput_median,
        local_batch=row.local_batch,
        threads_per_worker=row.threads_per_worker,
        profiled=bool(row.operators),
    )


def _ordered_phases(*breakdowns: dict[str, float]) -> list[str]:
    """Step order; a merged phase ("forward+backward") sits where its first phase would."""
    names = {name for breakdown in breakdowns for name in breakdown}

    def position(name: str) -> tuple[int, str]:
        first = name.split("+")[0]
        return (PHASES.index(first) if first in PHASES else len(PHASES), name)

    return sorted(names, key=position)


def phase_deltas(a: dict[str, float], b: dict[str, float]) -> list[Delta]:
    """Per-phase change, in display order; ``share`` is of the total change."""
    total = sum(b.values()) - sum(a.values())
    out = []
    for phase in _ordered_phases(a, b):
        delta = b.get(phase, 0.0) - a.get(phase, 0.0)
        out.append(
            Delta(
                phase, a.get(phase, 0.0), b.get(phase, 0.0), delta, delta / total if total else None
            )
        )
    return out


def group_deltas(phases: list[Delta]) -> list[Delta]:
    """Local compute (data, forward, backward, update) vs. communication and waiting."""
    total = sum(p.delta_s for p in phases)
    groups = []
    for name, members in (
        ("compute", [p for p in phases if p.name not in COMM_PHASES]),
        ("communication", [p for p in phases if p.name in COMM_PHASES]),
    ):
        a_s, b_s = sum(p.a_s for p in members), sum(p.b_s for p in members)
        groups.append(Delta(name, a_s, b_s, b_s - a_s, (b_s - a_s) / total if total else None))
    return groups


def dominant(deltas: list[Delta], total: float) -> Delta | None:
    """The entry that moved most in the direction of ``total`` (largest |delta| if none did)."""
    if not deltas:
        return None
    sign = 1.0 if total >= 0 else -1.0
    aligned = [d for d in deltas if d.delta_s * sign > 0]
    if aligned:
        return max(aligned, key=lambda d: d.delta_s * sign)
    return max(deltas, key=lambda d: abs(d.delta_s))


def _phase_ops(profile: dict[str, Any], phase: str | None) -> tuple[dict[str, float], bool]:
    """Self seconds per step by operator name in ``phase`` (None: all phases), and whether
    the table is a truncated top list (so a missing name may still have run)."""
    if phase is None:
        ops = profile.get("top") or []
        return {o["name"]: o["self_s"] for o in ops}, True
    entry = (profile.get("phases") or {}).get(phase) or {}
    ops = entry.get("ops") or []
    listed = sum(o["self_s"] for o in ops)
    return {o["name"]: o["self_s"] for o in ops}, listed < 0.999 * entry.get("self_s", 0.0)


def operator_deltas(
    a_profile: dict[str, Any],
    b_profile: dict[str, Any],
    phase: str | None,
    direction: float,
    top: int,
) -> list[Delta]:
    """Operators whose self time changed most in the direction of the phase's change."""
    a_ops, a_cut = _phase_ops(a_profile, phase)
    b_ops, b_cut = _phase_ops(b_profile, phase)
    deltas = []
    for name in set(a_ops) | set(b_ops):
        a_s, b_s = a_ops.get(name, 0.0), b_ops.get(name, 0.0)
        partial = (name not in a_ops and a_cut) or (name not in b_ops and b_cut)
        deltas.append(Delta(name, a_s, b_s, b_s - a_s, partial=partial))
    sign = 1.0 if direction >= 0 else -1.0
    deltas.sort(key=lambda d: -d.delta_s * sign)
    moved = sum(d.delta_s for d in deltas)
    return [
        Delta(d.name, d.a_s, d.b_s, d.delta_s, d.delta_s / moved if moved else None, d.partial)
        for d in deltas[:top]
    ]


def _has_phase(profile: dict[str, Any] | None, phase: str) -> bool:
    return bool(profile and ((profile.get("phases") or {}).get(phase) or {}).get("ops"))


def cross_framework(a: RunResult, b: RunResult) -> bool:
    """Whether the two runs' operator profiles use different frameworks' operator names."""
    return operator_framework(a.framework or "torch") != operator_framework(b.framework or "torch")


def unseparated_groups(*rows: RunResult) -> list[set[str]]:
    """Phases some run times as one (TensorFlow's ``backward`` holds its forward pass too:
    ``extra.unseparated_phases``), overlapping groups joined."""
    groups: list[set[str]] = []
    for row in rows:
        for key, members in ((row.extra or {}).get("unseparated_phases") or {}).items():
            group = {key, *members}
            for other in [g for g in groups if g & group]:
                group |= other
                groups.remove(other)
            groups.append(group)
    return [g for g in groups if len(g) > 1]


def merged_name(group: set[str]) -> str:
    return "+".join(p for p in PHASES if p in group) + "".join(
        f"+{p}" for p in sorted(group - set(PHASES))
    )


def merge_phases(breakdown: dict[str, float], groups: list[set[str]]) -> dict[str, float]:
    """``breakdown`` with each group's phases added up under one ``a+b`` name, so that two
    runs compare like for like when one of them cannot tell those phases apart."""
    merged = dict(breakdown)
    for group in groups:
        present = [p for p in group if p in merged]
        if present:
            merged[merged_name(group)] = sum(merged.pop(p) for p in present)
    return merged


def _comparable_profiles(a: RunResult, b: RunResult) -> tuple[dict[str, Any], dict[str, Any]]:
    pa, pb = a.operators or {}, b.operators or {}
    if not cross_framework(a, b):
        return pa, pb
    return (
        common_profile(pa, a.framework or "torch"),
        common_profile(pb, b.framework or "torch"),
    )


def _operator_level(
    a: RunResult, b: RunResult, phase: Delta | None, top: int
) -> tuple[list[Delta], str]:
    if not a.operators or not b.operators or phase is None:
        return [], "none"
    pa, pb = _comparable_profiles(a, b)
    # A merged phase ("forward+backward") has no operator table of its own.
    scope = phase.name if (_has_phase(pa, phase.name) or _has_phase(pb, phase.name)) else None
    ops = operator_deltas(pa, pb, scope, phase.delta_s, top)
    return ops, scope or "all phases"


def explain_rows(a: RunResult, b: RunResult, top: int = 5, phase: str | None = None) -> Explanation:
    """The top-down comparison of two ``ok`` rows; ``phase`` forces the drilled-in phase."""
    for row in (a, b):
        if row.status != "ok" or not row.breakdown:
            raise UserError(
                f"run {row.run_id} has no measurements "
                f"(status {row.status}: {row.error or 'no breakdown'})"
            )
    side_a, side_b = _side(a), _side(b)
    delta = side_b.step_time_s - side_a.step_time_s
    groups = unseparated_groups(a, b)
    phases = phase_deltas(merge_phases(a.breakdown, groups), merge_phases(b.breakdown, groups))
    chosen = _pick_phase(phases, delta, phase)
    operators, scope = _operator_level(a, b, chosen, top)
    explanation = Explanation(
        a=side_a,
        b=side_b,
        delta_s=delta,
        ratio=side_b.step_time_s / side_a.step_time_s if side_a.step_time_s else None,
        groups=group_deltas(phases),
        phases=phases,
        phase=chosen.name if chosen else None,
        operators=operators,
        operator_scope=scope,
        notes=context_notes(a, b, chosen, scope),
        accuracy_gap=accuracy_gap(a, b),
        **throughput_difference(a, b),
    )
    return _with_conclusion(explanation)


def throughput_difference(a: RunResult, b: RunResult) -> dict[str, Any]:
    """B's throughput over A's, its interval over rounds and the verdict in words."""
    if not a.throughput_median or not b.throughput_median:
        return {}
    ratio = ratio_interval(rounds_or_median(b), rounds_or_median(a))
    interval = [ratio.low, ratio.high] if ratio.n >= 2 else None
    return {
        "throughput_ratio": ratio.median,
        "throughput_ratio_ci": interval,
        "difference": verdict(ratio, higher="B is faster", lower="B is slower"),
    }


def _pick_phase(phases: list[Delta], total: float, forced: str | None) -> Delta | None:
    if forced is None:
        return dominant(phases, total)
    for candidate in phases:
        if candidate.name == forced:
            return candidate
    known = ", ".join(p.name for p in phases)
    raise UserError(f"phase '{forced}' is in neither run (phases: {known})")


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:.0f}%"


def seconds(value: float, signed: bool = False) -> str:
    """Human units: 1.23 s, 45.6 ms or 789 µs; ``signed`` adds +/−."""
    magnitude = abs(value)
    if magnitude >= 1.0:
        text = f"{magnitude:.2f} s"
    elif magnitude >= 1e-3:
        text = f"{magnitude * 1e3:.1f} ms"
    else:
        text = f"{magnitude * 1e6:.0f} µs"
    if not signed:
        return text if value >= 0 else f"-{text}"
    return f"{'+' if value >= 0 else '−'}{text}"


def _with_conclusion(e: Explanation) -> Explanation:
    more = "more" if e.delta_s > 0 else "less"
    text = _noise_clause(e) + (
        f"B ({e.b.label}) takes {seconds(e.b.step_time_s)} per step, "
        f"{seconds(abs(e.delta_s))} {more} than A ({e.a.label}, {seconds(e.a.step_time_s)})"
    )
    chosen = next((p for p in e.phases if p.name == e.phase), None)
    if chosen is not None and e.delta_s:
        text += (
            f"; {chosen.name} accounts for {_pct(chosen.share)} of the difference "
            f"({seconds(chosen.delta_s, signed=True)})"
        )
    text += _operator_clause(e)
    return Explanation(**{**_fields(e), "conclusion": text + "."})


def _noise_clause(e: Explanation) -> str:
    """Said first when the throughputs cannot be told apart: what follows is within noise."""
    if e.difference != SAME or e.throughput_ratio_ci is None:
        return ""
    low, high = e.throughput_ratio_ci
    return (
        f"{SAME} in throughput (B / A {e.throughput_ratio:.2f}, interval over rounds "
        f"{low:.2f}-{high:.2f}); per step: "
    )


def _operator_clause(e: Explanation) -> str:
    if e.operator_scope == "none":
        return (
            "; run both with --profile-ops to see operators"
            if not (e.a.profiled and e.b.profiled)
            else ""
        )
    chosen = next((p for p in e.phases if p.name == e.phase), None)
    direction = 1.0 if (chosen.delta_s if chosen else e.delta_s) >= 0 else -1.0
    named = [op for op in e.operators[:NAMED_OPERATORS] if op.delta_s * direction > 0]
    if not named:
        return (
            f"; no operator in {e.operator_scope} changed that way, so the difference "
            "is time spent waiting, not CPU work"
        )
    parts = [f"{op.name} ({seconds(op.delta_s, signed=True)})" for op in named]
    where = "" if e.operator_scope == e.phase else f" ({e.operator_scope})"
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return f", mostly{where} {listed}"


def _fields(e: Explanation) -> dict[str, Any]:
    return {name: getattr(e, name) for name in e.__dataclass_fields__}


def context_notes(a: RunResult, b: RunResult, phase: Delta | None, scope: str) -> list[str]:
    """Differences in setup that are likely causes, and caveats of the comparison."""
    notes = [*_setup_notes(a, b), *_saturation_notes(a, b), *_straggler_notes(a, b)]
    if scope != "none" and cross_framework(a, b):
        notes.append(
            'operators compared by common names (docs/frameworks.md, "Operator '
            'profiles"); a name with a framework: prefix has no counterpart'
        )
    for group in unseparated_groups(a, b):
        over_all = phase is not None and phase.name == merged_name(group)
        notes.append(
            f"{merged_name(group)}: a run times these phases as one, so they are "
            "added up in both runs"
            + (" and operators are compared over all phases" if over_all else "")
        )
    if phase is not None and phase.name in COMM_PHASES and scope != "none":
        notes.append(
            f"{phase.name} is mostly waiting on other ranks or the network; "
            "operators cover only the CPU work around it"
        )
    return notes


def _setup_notes(a: RunResult, b: RunResult) -> list[str]:
    notes = []
    for key, what in (("model", "models"), ("dataset", "datasets"), ("framework", "frameworks")):
        if getattr(a, key) != getattr(b, key):
            notes.append(f"different {what}: {getattr(a, key)} vs {getattr(b, key)}")
    if a.threads_per_worker != b.threads_per_worker:
        notes.append(
            f"threads per worker differ (A {a.threads_per_worker}, "
            f"B {b.threads_per_worker}): on a CPU host compute phases scale "
            "with the threads each worker gets"
        )
    if a.local_batch != b.local_batch:
        notes.append(
            f"local batches differ (A {a.local_batch}, B {b.local_batch})"
            ": per-step times are not per-sample times; compare throughput"
        )
    for side, row in (("A", a), ("B", b)):
        reasons = unfaithful_reasons(stored_emulation(row.extra, row.resources))
        if reasons:
            notes.append(
                f"{side} emulated its compute, but communication kept the cores "
                f"busy ({'; '.join(reasons)}): waits ended and gradients were "
                "released late, the emulation is not faithful there"
            )
        elif row.oversubscribed:
            notes.append(
                f"{side} was oversubscribed (processes × threads > cores): its workers shared cores"
            )
    return notes


def _straggler_notes(a: RunResult, b: RunResult) -> list[str]:
    """Name each run's slowest rank: users ask for it first."""
    notes = []
    for side, row in (("A", a), ("B", b)):
        straggler = straggler_of(row.extra)
        if straggler is not None:
            notes.append(f"{side}: {straggler.sentence()}")
    return notes


def _saturation_notes(a: RunResult, b: RunResult) -> list[str]:
    busy = []
    for side, row in (("A", a), ("B", b)):
        value = mean_in_window(row.resources, "system_cpu_percent")
        if value is not None and value >= SATURATED_PERCENT:
            busy.append(f"{side} {value:.0f}%")
    if not busy:
        return []
    return [
        f"the host's CPUs were saturated during the measured steps ({', '.join(busy)} "
        "busy): workers and any other processes competed for cores"
    ]


def resolve_run(store: ResultStore, ref: str) -> RunResult:
    """A run by its id or a unique suffix of it (tables show the last 6 characters)."""
    rows = store.query(run_ids=[ref])
    if rows:
        return rows[0]
    matches = [row for row in store.query() if row.run_id.endswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no run '{ref}' in {store.path} (see `distbench results`)")
    raise UserError(f"run '{ref}' is ambiguous: {', '.join(r.run_id for r in matches[:5])}")


def explain_runs(
    store: ResultStore, ref_a: str, ref_b: str, top: int = 5, phase: str | None = None
) -> Explanation:
    return explain_rows(resolve_run(store, ref_a), resolve_run(store, ref_b), top, phase)


def explanation_as_dict(e: Explanation) -> dict[str, Any]:
    return asdict(e)


@dataclass(frozen=True)
class Finding:
    """One line of the report's written summary."""

    topic: str
    text: str
    notes: list[str] = field(default_factory=list)


def suite_findings(rows: list[RunResult], per_group: int = 3) -> list[Finding]:
    """The biggest differences in a selection: per model and dataset, the fastest run, and
    for the least efficient multi-worker runs, why they fall short of their baseline.
    ``rows`` carry ``baseline_run_id`` from ``ResultStore.with_scaling``."""
    ok = [row for row in rows if row.status == "ok" and row.breakdown]
    by_id = {row.run_id: row for row in ok}
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for row in ok:
        groups.setdefault((row.model, row.dataset), []).append(row)
    findings = []
    for (model, dataset), members in groups.items():
        topic = f"{model} on {dataset}"
        findings.append(Finding(topic, _fastest_text(members)))
        findings.extend(_scaling_findings(topic, members, by_id, per_group))
    return findings


def _fastest_text(members: list[RunResult]) -> str:
    best = max(members, key=lambda r: r.throughput_median or 0.0)
    speedup = best.speedup
    same = f" ({SAME})" if best.speedup_verdict == SAME else ""
    extra = f", speedup {speedup:.2f}{same} over {best.baseline}" if speedup else ""
    return (
        f"highest throughput: {run_label(best)} at {best.throughput_median:.1f} samples/s{extra}."
    )


def _scaling_findings(
    topic: str, members: list[RunResult], by_id: dict[str, RunResult], limit: int
) -> list[Finding]:
    candidates = [r for r in members if r.workers > 1 and (r.baseline_run_id or "") in by_id]
    candidates.sort(key=lambda r: r.efficiency or 0.0)
    findings = []
    for row in candidates[:limit]:
        e = explain_rows(by_id[row.baseline_run_id or ""], row, top=NAMED_OPERATORS)
        eff = row.efficiency
        same = f" (speedup {row.speedup:.2f}: {SAME})" if row.speedup_verdict == SAME else ""
        head = f"efficiency {eff:.2f}{same}: " if eff is not None else ""
        findings.append(Finding(topic, head + e.conclusion, e.notes))
    return findings
