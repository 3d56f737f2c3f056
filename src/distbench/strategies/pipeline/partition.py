"""The pipeline planner: where to cut an ordered list of blocks into contiguous stages.

Pure Python, no torch import, so it is testable with made-up costs. Start at ``plan_stages``:
``uniform`` gives every stage the same number of blocks; ``profiled`` takes each block's
measured cost (``BlockCost``) and chooses the cut that minimises the slowest stage, by the
dynamic programme PipeDream's optimizer uses (Narayanan et al., SOSP 2019, section 3.1):

    best[k][j] = min over i < j of max(best[k-1][i], stage_time(i, j))

where ``best[k][j]`` is the slowest stage when the first ``j`` blocks form ``k`` stages.
Unlike PipeDream, which treats each link as a pipeline stage of its own (running in parallel
with compute), a stage's time here *includes* the transfers at its boundaries: on a CPU
host with gloo, sending and receiving occupy the same cores that compute, so they do not
overlap. A boundary after block ``b`` moves ``b``'s output forward and the gradient of the
same size backward, once per micro-batch, and is charged to both neighbouring stages.
All times are per micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Partition methods, as ``--partition`` spells them.
METHODS: tuple[str, ...] = ("uniform", "profiled")


@dataclass(frozen=True)
class BlockCost:
    """One block's profile, per micro-batch: compute seconds and bytes."""

    name: str
    forward_s: float
    backward_s: float
    param_bytes: int
    activation_bytes: int  # the block's output for one micro-batch
    #: Copying the block's weights once and updating them once: what a schedule that
    #: stashes and updates per micro-batch (PipeDream) spends beyond compute.
    weights_s: float = 0.0
    #: Of ``weights_s``, the update alone (what an emulated stage waits per update).
    update_s: float = 0.0

    @property
    def compute_s(self) -> float:
        return self.forward_s + self.backward_s


@dataclass(frozen=True)
class Link:
    """A point-to-point link in the alpha-beta model: ``latency_s + bytes / bandwidth``."""

    latency_s: float
    bandwidth_bytes_per_s: float
    measured: bool = False
    #: Seconds per byte of one ring all-reduce step (send, receive, reduce), measured with a
    #: two-rank all-reduce; None: the transfer alone (``transfer_s``).
    reduce_s_per_byte: float | None = None

    def transfer_s(self, nbytes: int) -> float:
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s

    def ring_step_s(self, nbytes: int) -> float:
        """One step of a ring all-reduce moving and reducing ``nbytes``."""
        if self.reduce_s_per_byte is None:
            return self.transfer_s(nbytes)
        return self.latency_s + nbytes * self.reduce_s_per_byte


#: Used when no measurement is available: 1 Gbit/s Ethernet (the link of the thesis
#: measurements in background.md) with 50 microseconds latency.
DEFAULT_LINK = Link(latency_s=50e-6, bandwidth_bytes_per_s=125e6)


@dataclass(frozen=True)
class StagePlan:
    """One stage: blocks ``[start, stop)`` and, when a profile exists, its predicted costs."""

    index: int
    start: int
    stop: int
    blocks: tuple[str, ...]
    compute_s: float | None = None  # forward + backward of its blocks, per micro-batch
    comm_s: float | None = None  # boundary transfers, per micro-batch
    param_bytes: int | None = None
    #: Data-parallel copies of the stage: they take the micro-batches in turn and average
    #: their gradients (an all-reduce per update) before every update.
    replicas: int = 1
    sync_s: float | None = None  # that all-reduce, once per update
    #: Stashing and updating the stage's weights per micro-batch (PipeDream), else 0.
    weights_s: float = 0.0

    @property
    def own_s(self) -> float | None:
        """One replica's work on one micro-batch: compute, boundary transfers and, where
        weights are stashed and updated per micro-batch, that."""
        if self.compute_s is None or self.comm_s is None:
            return None
        return self.compute_s + self.comm_s + self.weights_s

    @property
    def time_s(self) -> float | None:
        """Per micro-batch of the stream: a replica's work on its micro-batch and its
        share of the all-reduce, divided over the replicas that take turns."""
        if self.own_s is None:
            return None
        return (self.own_s + (self.sync_s or 0.0)) / self.replicas


@dataclass(frozen=True)
class Plan:
    """A partition of the blocks into stages, the same on every rank."""

    method: str
    stages: tuple[StagePlan, ...]
    link: Link | None = None
    profile: tuple[BlockCost, ...] = field(default=(), repr=False)

    @property
    def bottleneck_s(self) -> float | None:
        """Predicted time of the slowest stage per micro-batch (None without a profile)."""
        times = [s.time_s for s in self.stages]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)

    def cuts(self) -> list[tuple[int, int]]:
        return [(s.start, s.stop) for s in self.stages]

    @property
    def workers(self) -> int:
        return sum(s.replicas for s in self.stages)

    def place(self, rank: int) -> tuple[int, int]:
        """(stage, replica) of global ``rank``: a stage's replicas are consecutive ranks."""
        first = 0
        for stage in self.stages:
            if rank < first + stage.replicas:
                return stage.index, rank - first
            first += stage.replicas
        raise ValueError(f"rank {rank} is beyond the plan's {first} workers")

    def rank_of(self, stage: int, replica: int) -> int:
        return sum(s.replicas for s in self.stages[:stage]) + replica

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "stages": [asdict(s) for s in self.stages],
            "bottleneck_s": self.bottleneck_s,
            "link": asdict(self.link) if self.link else None,
            "profile": [asdict(b) for b in self.profile],
        }


def theoretical_bubble(stages: int, microbatches: int) -> float:
    """Idle fraction of a GPipe or 1F1B step with equal stages and free communication:
    ``(S-1) / (M+S-1)`` (Huang et al. 2019; 1F1B has the same bubble, fewer activations)."""
    return (stages - 1) / (microbatches + stages - 1)


def predicted_step_s(plan: Plan, microbatches: int, flush: bool = True) -> float | None:
    """Step time the plan predicts: ``M`` slots of the slowest stage in the steady state
    of a pipeline that never flushes (PipeDream, replicas taking turns); for one that
    fills and drains every step, ``flush_step_s``."""
    if not flush:
        bottleneck = plan.bottleneck_s
        return None if bottleneck is None else microbatches * bottleneck
    owns = [s.own_s for s in plan.stages]
    if any(o is None for o in owns):
        return None
    return flush_step_s(
        [o for o in owns if o is not None],
        fill_s(plan.stages),
        [s.sync_s or 0.0 for s in plan.stages],
        plan.stages[0].replicas,
        microbatches,
    )


def fill_s(stages: Sequence[StagePlan]) -> float:
    """One micro-batch's way through the whole pipeline and back: every stage's work and
    every boundary's transfers once (a stage's ``comm_s`` holds both its boundaries, so
    each boundary is in two stages' ``comm_s``)."""
    work = sum((s.compute_s or 0.0) + s.weights_s for s in stages)
    return work + sum(s.comm_s or 0.0 for s in stages) / 2


def flush_step_s(
    own_s: Sequence[float], fill: float, sync_s: Sequence[float], copies: int, m: int
) -> float:
    """A flushing pipeline's step (GPipe, 1F1B-flush) with ``copies`` copies of the whole
    pipeline that take ``m / copies`` micro-batches each: the first micro-batch's way
    through every stage and back (``fill``), the other ``m / copies - 1`` behind it at the
    pace of the slowest stage (``own_s``: per micro-batch), then the slowest stage's
    all-reduce among its copies (``sync_s``), once per step. With equal stages of ``t``
    this is GPipe's ``(M + S - 1) t``; with unequal ones, the stages other than the slowest
    add only their own time to the fill and drain, not the slowest stage's."""
    return (m // copies - 1) * max(own_s) + fill + max(sync_s, default=0.0)


# ---------------------------------------------------------------------------- cuts


def uniform_cuts(n_blocks: int, n_stages: int) -> list[tuple[int, int]]:
    """Equal block counts; the first ``n_blocks % n_stages`` stages get one block more."""
    _check_sizes(n_blocks, n_stages)
    base, extra = divmod(n_blocks, n_stages)
    cuts, start = [], 0
    for index in range(n_stages):
        stop = start + base + (1 if index < extra else 0)
        cuts.append((start, stop))
        start = stop
    return cuts


def boundary_s(costs: Sequence[BlockCost], after: int, link: Link) -> float:
    """Time to move block ``after``'s output forward and its gradient back, per micro-batch."""
    return 2 * link.transfer_s(costs[after].activation_bytes)


def stage_comm_s(costs: Sequence[BlockCost], start: int, stop: int, link: Link) -> float:
    """Transfers charged to the stage of blocks ``[start, stop)``: its in- and out-boundary."""
    comm = boundary_s(costs, start - 1, link) if start > 0 else 0.0
    return comm + (boundary_s(costs, stop - 1, link) if stop < len(costs) else 0.0)


def stage_time_s(
    costs: Sequence[BlockCost], start: int, stop: int, link: Link, per_microbatch: bool = False
) -> float:
    """Compute and boundary transfers of a stage per micro-batch and, where weights are
    stashed and updated per micro-batch (``per_microbatch``), that too."""
    compute = sum(c.compute_s for c in costs[start:stop])
    weights = sum(c.weights_s for c in costs[start:stop]) if per_microbatch else 0.0
    return compute + weights + stage_comm_s(costs, start, stop, link)


def allreduce_s(nbytes: int, replicas: int, link: Link) -> float:
    """A ring all-reduce of ``nbytes`` among ``replicas`` over ``link``: ``2(r-1)`` steps of
    ``nbytes / r`` each (each a transfer, and a reduction where the link measured it)."""
    if replicas <= 1:
        return 0.0
    return 2 * (replicas - 1) * link.ring_step_s(nbytes // replicas)


def replicated_stage_s(
    costs: Sequence[BlockCost],
    start: int,
    stop: int,
    link: Link,
    replicas: int,
    per_microbatch: bool = False,
) -> float:
    """A stage of blocks ``[start, stop)`` with ``replicas`` copies, per micro-batch."""
    params = sum(c.param_bytes for c in costs[start:stop])
    own = stage_time_s(costs, start, stop, link, per_microbatch)
    return (own + allreduce_s(params, replicas, link)) / replicas


def best_replicated(
    costs: Sequence[BlockCost],
    workers: int,
    link: Link,
    divides: int | None = None,
    per_microbatch: bool = False,
) -> list[tuple[int, int, int]]:
    """PipeDream's planner with replication: contiguous stages and a number of replicas
    each, using exactly ``workers`` workers, minimising the slowest stage per micro-batch
    (Narayanan et al. 2019, section 3.1):

        best[m][j] = min over i < j, 1 <= r <= m of max(best[m-r][i], T(i, j, r))

    where ``best[m][j]`` is the slowest stage when ``m`` workers run blocks ``[0, j)`` and
    ``T(i, j, r)`` the stage of blocks ``[i, j)`` on ``r`` replicas
    (``replicated_stage_s``). With ``divides``, a stage's replicas divide it (so that they
    take a step's micro-batches in equal turns). Returns ``(start, stop, replicas)`` per
    stage."""
    n = len(costs)
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(workers + 1)]
    arg: list[list[tuple[int, int]]] = [[(0, 0)] * (n + 1) for _ in range(workers + 1)]
    best[0][0] = 0.0
    for m in range(1, workers + 1):
        for j in range(1, n + 1):
            for r in range(1, m + 1):
                if divides is not None and divides % r:
                    continue
                for i in range(j):
                    if best[m - r][i] == inf:
                        continue
                    stage = replicated_stage_s(costs, i, j, link, r, per_microbatch)
                    value = max(best[m - r][i], stage)
                    if value < best[m][j]:
                        best[m][j], arg[m][j] = value, (i, r)
    if best[workers][n] == inf:
        raise ValueError(
            f"no plan puts {workers} workers on {n} blocks with replicas dividing {divides}"
        )
    stages, m, stop = [], workers, n
    while stop > 0:
        start, r = arg[m][stop]
        stages.append((start, stop, r))
        m, stop = m - r, start
    return stages[::-1]


def pipeline_copies(
    n_blocks: int, workers: int, microbatches: int, one_f_one_b: bool = False
) -> list[tuple[int, int]]:
    """``(stages, copies)`` a flushing pipeline can run on ``workers``: ``copies`` copies
    of a pipeline of ``stages`` stages (every stage replicated alike, as data parallelism
    around a pipeline is), ``copies`` dividing ``microbatches``, at most one stage per
    block and, for 1F1B, at least as many micro-batches per copy as stages."""
    found = []
    for stages in range(1, min(workers, n_blocks) + 1):
        copies, rest = divmod(workers, stages)
        if rest or microbatches % copies:
            continue
        if one_f_one_b and microbatches // copies < stages:
            continue
        found.append((stages, copies))
    return found


def best_pipeline_copies(
    costs: Sequence[BlockCost],
    workers: int,
    link: Link,
    microbatches: int,
    one_f_one_b: bool = False,
) -> tuple[list[tuple[int, int]], int]:
    """The fastest flushing pipeline on ``workers``: over every ``pipeline_copies`` shape,
    the best cut of its stages (``best_cuts``) priced by ``flush_step_s``. Returns the
    cuts and the copies."""
    best: tuple[float, list[tuple[int, int]], int] | None = None
    names = [c.name for c in costs]
    for stages, copies in pipeline_copies(len(costs), workers, microbatches, one_f_one_b):
        cuts = best_cuts(costs, stages, link)
        plan = make_plan("profiled", names, cuts, costs, link, [copies] * len(cuts))
        step = predicted_step_s(plan, microbatches)
        assert step is not None  # a plan with costs predicts
        if best is None or step < best[0]:
            best = (step, cuts, copies)
    if best is None:
        raise ValueError(
            f"no flushing pipeline puts {workers} workers on {len(costs)} blocks with "
            f"copies dividing {microbatches} micro-batches"
        )
    return best[1], best[2]


def replicated_fits(n_blocks: int, workers: int, divides: int) -> bool:
    """Whether ``workers`` can be spread over at most ``n_blocks`` stages with replica
    counts that divide ``divides`` (``best_replicated``'s plans)."""
    counts = [r for r in range(1, workers + 1) if divides % r == 0]
    # fewest stages that use exactly w workers
    fewest = [0] + [n_blocks + 1] * workers
    for w in range(1, workers + 1):
        fewest[w] = min((fewest[w - r] + 1 for r in counts if r <= w), default=n_blocks + 1)
    return fewest[workers] <= n_blocks


def best_cuts(
    costs: Sequence[BlockCost], n_stages: int, link: Link, per_microbatch: bool = False
) -> list[tuple[int, int]]:
    """Contiguous non-empty stages minimising the slowest stage time (PipeDream's DP)."""
    n = len(costs)
    _check_sizes(n, n_stages)
    inf = float("inf")
    # best[k][j]: slowest stage when blocks [0, j) form k stages; arg[k][j]: last cut.
    best = [[inf] * (n + 1) for _ in range(n_stages + 1)]
    arg = [[0] * (n + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for k in range(1, n_stages + 1):
        for j in range(k, n - (n_stages - k) + 1):
            for i in range(k - 1, j):
                value = max(best[k - 1][i], stage_time_s(costs, i, j, link, per_microbatch))
                if value < best[k][j]:
                    best[k][j], arg[k][j] = value, i
    return _walk_back(arg, n, n_stages)


def _walk_back(arg: list[list[int]], n: int, n_stages: int) -> list[tuple[int, int]]:
    cuts, stop = [], n
    for k in range(n_stages, 0, -1):
        start = arg[k][stop]
        cuts.append((start, stop))
        stop = start
    return cuts[::-1]


def _check_sizes(n_blocks: int, n_stages: int) -> None:
    if n_stages < 1:
        raise ValueError(f"need at least one stage, got {n_stages}")
    if n_stages > n_blocks:
        raise ValueError(f"cannot cut {n_blocks} blocks into {n_stages} non-empty stages")


# ---------------------------------------------------------------------------- plans


def make_plan(
    method: str,
    names: Sequence[str],
    cuts: Sequence[tuple[int, int]],
    costs: Sequence[BlockCost] | None = None,
    link: Link | None = None,
    replicas: Sequence[int] | None = None,
    per_microbatch: bool = False,
) -> Plan:
    """Attach block names and, given a profile and a link, predicted costs to ``cuts``
    (``replicas``: per stage, 1 where not given)."""
    stages = []
    for index, (start, stop) in enumerate(cuts):
        copies = replicas[index] if replicas else 1
        compute = comm = sync = None
        params = None
        if costs is not None and link is not None:
            compute = sum(c.compute_s for c in costs[start:stop])
            comm = stage_comm_s(costs, start, stop, link)
            params = sum(c.param_bytes for c in costs[start:stop])
            sync = allreduce_s(params, copies, link)
        weights = sum(c.weights_s for c in costs[start:stop]) if costs and per_microbatch else 0.0
        stages.append(
            StagePlan(
                index,
                start,
                stop,
                tuple(names[start:stop]),
                compute,
                comm,
                params,
                copies,
                sync,
                weights,
            )
        )
    return Plan(method, tuple(stages), link, tuple(costs or ()))


def plan_stages(
    method: str,
    names: Sequence[str],
    n_stages: int,
    costs: Sequence[BlockCost] | None = None,
    link: Link | None = None,
    replicate: bool = False,
    microbatches: int | None = None,
    per_microbatch: bool = False,
    copies_only: bool = False,
    one_f_one_b: bool = False,
) -> Plan:
    """The plan for ``method``; ``profiled`` needs ``costs`` (and uses ``DEFAULT_LINK``
    when no link is given). A uniform plan with costs carries predictions too. With
    ``replicate``, ``n_stages`` is the workers a profiled plan may spread over stages and
    replicas of stages (``best_replicated``; replicas dividing ``microbatches``), or with
    ``copies_only`` over copies of a whole pipeline (``best_pipeline_copies``: every
    stage replicated alike, as the flushing schedules run them). With ``per_microbatch`` a
    stage's time includes stashing and updating its weights per micro-batch
    (``BlockCost.weights_s``), as PipeDream does."""
    if method not in METHODS:
        raise ValueError(f"unknown partition method '{method}' (known: {', '.join(METHODS)})")
    if costs is not None and len(costs) != len(names):
        raise ValueError(f"{len(costs)} block costs for {len(names)} blocks")
    if method == "uniform":
        cuts = uniform_cuts(len(names), n_stages)
        return make_plan(method, names, cuts, costs, link, per_microbatch=per_microbatch)
    if costs is None:
        raise ValueError("the profiled partition needs block costs")
    link = link or DEFAULT_LINK
    if replicate and copies_only:
        assert microbatches is not None
        cuts, copies = best_pipeline_copies(costs, n_stages, link, microbatches, one_f_one_b)
        return make_plan(method, names, cuts, costs, link, [copies] * len(cuts))
    if replicate:
        chosen = best_replicated(costs, n_stages, link, microbatches, per_microbatch)
        cuts = [(start, stop) for start, stop, _ in chosen]
        replicas = [r for _, _, r in chosen]
        return make_plan(method, names, cuts, costs, link, replicas, per_microbatch)
    cuts = best_cuts(costs, n_stages, link, per_microbatch)
    return make_plan(method, names, cuts, costs, link, per_microbatch=per_microbatch)


def format_plan(plan: Plan, microbatches: int, flush: bool = True) -> str:
    """Human-readable plan, one line per stage (what the run prints on stderr)."""
    lines = [
        f"pipeline plan ({plan.method}, {len(plan.stages)} stages, {microbatches} micro-batches):"
    ]
    for stage in plan.stages:
        names = _short_names(stage.blocks)
        if stage.replicas > 1:
            names += f"  x{stage.replicas} replicas"
        # a flushing pipeline's copies each take their micro-batches whole
        per_microbatch = stage.own_s if flush else stage.time_s
        if per_microbatch is None:
            lines.append(f"  stage {stage.index}: {names}")
        else:
            lines.append(
                f"  stage {stage.index}: {names}  predicted "
                f"{1e3 * per_microbatch:.2f} ms/micro-batch "
                f"(compute {1e3 * (stage.compute_s or 0):.2f}, "
                f"comm {1e3 * (stage.comm_s or 0):.2f}"
                + (f", stash and update {1e3 * stage.weights_s:.2f}" if stage.weights_s else "")
                + ")"
            )
    step = predicted_step_s(plan, microbatches, flush)
    copies = plan.stages[0].replicas if flush else 1
    if step is not None:
        lines.append(
            f"  predicted step {1e3 * step:.1f} ms, slowest stage "
            f"{1e3 * _slowest_s(plan, flush):.2f} ms/micro-batch"
            + (f", {plan.stages[0].replicas} copies of the pipeline" if copies > 1 else "")
        )
    return "\n".join(lines)


def _slowest_s(plan: Plan, flush: bool) -> float:
    """The slowest stage per micro-batch: one copy's own work in a flushing pipeline, the
    stream's share with replicas taking turns in one that never flushes."""
    times = [s.own_s if flush else s.time_s for s in plan.stages]
    return max((t for t in times if t is not None), default=0.0)


def _short_names(blocks: Sequence[str]) -> str:
    if len(blocks) <= 4:
        return ", ".join(blocks)
    return f"{blocks[0]} .. {blocks[-1]} ({len(blocks)} blocks)"
