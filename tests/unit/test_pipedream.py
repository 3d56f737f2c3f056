"""PipeDream's 1F1B without flushes, with weight stashing: the order, the equivalence with
sequential SGD when one micro-batch is in flight, and each gradient checked against the
weights of the version its forward saw. Stages run as threads over an in-memory transport
(the strategy's runs use torch.distributed point-to-point; the schedule is the same)."""

from __future__ import annotations

import copy
import itertools
import queue
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest
import torch
from torch import nn

from distbench.strategies.pipeline.pipedream import (
    Action,
    PipeDreamStage,
    one_f_one_b,
    replica_actions,
)

TOTAL, MICRO = 8, 4


class QueueTransport:
    """Point-to-point between threads: one queue per (source, destination, tag)."""

    def __init__(self, rank: int, queues: dict) -> None:
        self.rank, self.queues = rank, queues

    def send(self, tensor: torch.Tensor, peer: int, tag: int) -> None:
        self.queues[(self.rank, peer, tag)].put(tensor.detach().clone())

    def recv(self, like: torch.Tensor, peer: int, tag: int) -> torch.Tensor:
        return self.queues[(peer, self.rank, tag)].get(timeout=30)

    def wait_sends(self, last_microbatch: int | None = None) -> None:
        pass


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(TOTAL):
        x = torch.randn(MICRO, 6, generator=generator)
        batches.append((x, torch.randint(0, 3, (MICRO,), generator=generator)))
    return batches


def _sgd(params: object) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)  # type: ignore[arg-type]


def _pipeline(
    model: nn.Sequential,
    cuts: list[tuple[int, int]],
    in_flight: int | None,
    vertical_sync: bool = False,
) -> list[PipeDreamStage]:
    """Run ``model`` cut at ``cuts`` as threads; returns the stages."""
    data = _data()
    queues: dict = defaultdict(queue.Queue)
    shapes = [torch.zeros(MICRO, 6)]
    x = shapes[0]
    for start, stop in cuts:
        x = model[start:stop](x)
        shapes.append(torch.zeros_like(x.detach()))
    stages = []
    for s, (start, stop) in enumerate(cuts):
        module = copy.deepcopy(model[start:stop])
        stages.append(
            PipeDreamStage(
                module, _sgd(module.parameters()), QueueTransport(s, queues),
                s - 1 if s > 0 else None, s + 1 if s + 1 < len(cuts) else None,
                shapes[s], shapes[s + 1], stash=in_flight != 1, trace=[],
                vertical_sync=vertical_sync,
            )
        )  # fmt: skip
    errors: list[BaseException] = []

    def work(s: int) -> None:
        try:
            stages[s].run(one_f_one_b(s, len(cuts), TOTAL, in_flight), lambda k: data[k])
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(len(cuts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return stages


def test_one_f_one_b_order() -> None:
    F, B = "F", "B"
    order = [(a.kind, a.microbatch) for a in one_f_one_b(0, 3, 4)]
    assert order == [(F, 0), (F, 1), (F, 2), (B, 0), (F, 3), (B, 1), (B, 2), (B, 3)]
    last = [(a.kind, a.microbatch) for a in one_f_one_b(2, 3, 2)]
    assert last == [(F, 0), (B, 0), (F, 1), (B, 1)]
    assert one_f_one_b(0, 3, 2, in_flight=1) == [
        Action(F, 0), Action(B, 0), Action(F, 1), Action(B, 1),
    ]  # fmt: skip


def test_one_micro_batch_in_flight_is_sequential_sgd() -> None:
    model = _model()
    reference = copy.deepcopy(model)
    optimizer = _sgd(reference.parameters())
    for x, y in _data():
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(reference(x), y).backward()
        optimizer.step()
    stages = _pipeline(model, [(0, 2), (2, 4), (4, 5)], in_flight=1)
    trained = nn.Sequential(*[m for stage in stages for m in stage.module.children()])
    for ours, theirs in zip(trained.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def _weights_by_version(initial: nn.Module, trace: list[dict]) -> list[dict[str, torch.Tensor]]:
    """The stage's weights after each update, replayed from the gradients it applied."""
    module = copy.deepcopy(initial)
    optimizer = _sgd(module.parameters())
    versions = [{n: p.detach().clone() for n, p in module.named_parameters()}]
    for record in trace:
        for name, p in module.named_parameters():
            p.grad = record["applied"][name]
        optimizer.step()
        versions.append({n: p.detach().clone() for n, p in module.named_parameters()})
    return versions


def test_stashed_gradients_are_those_of_the_weights_the_forward_saw() -> None:
    model = _model()
    first = copy.deepcopy(model[0:2])
    stages = _pipeline(model, [(0, 2), (2, 5)], in_flight=None)
    stage = stages[0]
    # PipeDream's delay: stage 0 of 2 runs one forward ahead, so from the second
    # micro-batch on its forward saw the weights one update before the ones it updates
    delays = [update - seen for _, seen, update in stage.versions]
    assert delays == [0] + [1] * (TOTAL - 1)
    assert stage.stash_peak_bytes == 2 * sum(p.numel() * 4 for p in first.parameters())
    weights = _weights_by_version(first, stage.trace or [])
    stale = 0
    for record in stage.trace or []:
        for version, should_match in ((record["version"], True), (record["version"] + 1, False)):
            params = {n: t.clone().requires_grad_(True) for n, t in weights[version].items()}
            out = torch.func.functional_call(first, params, (record["inputs"],))
            grads = torch.autograd.grad(out, list(params.values()), record["grad_out"])
            same = all(
                torch.allclose(g, record["applied"][n], rtol=1e-5, atol=1e-7)
                for n, g in zip(params, grads, strict=True)
            )
            if should_match:
                assert same, f"micro-batch {record['microbatch']}: not its forward's weights"
            else:
                stale += not same
    # the check can fail: on the next version's weights the gradients differ
    assert stale == TOTAL


def test_an_update_between_forward_and_backward_without_stashing_is_caught() -> None:
    """Without stashing, an in-flight micro-batch's saved weights change under it; autograd
    refuses (this is why PipeDream stashes)."""
    with pytest.raises(AssertionError, match="modified by an inplace operation"):
        model = _model()
        data = _data()
        queues: dict = defaultdict(queue.Queue)
        stage = PipeDreamStage(
            model, _sgd(model.parameters()), QueueTransport(0, queues), None, None,
            torch.zeros(MICRO, 6), torch.zeros(MICRO, 3), stash=False,
        )  # fmt: skip
        try:
            stage.run([Action("F", 0), Action("F", 1), Action("B", 0), Action("B", 1)],
                      lambda k: data[k])  # fmt: skip
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from exc


class ThreadAverage:
    """The replicas' all-reduce (mean) between threads."""

    def __init__(self, replicas: int) -> None:
        self.barrier = threading.Barrier(replicas)
        self.slots: dict[int, list[torch.Tensor]] = {}
        self.replicas = replicas

    def for_replica(self, replica: int) -> Callable[[list[torch.Tensor]], None]:
        def average(grads: list[torch.Tensor]) -> None:
            self.slots[replica] = [g.clone() for g in grads]
            self.barrier.wait()
            for i, g in enumerate(grads):
                g.copy_(torch.stack([self.slots[r][i] for r in range(self.replicas)]).mean(0))
            self.barrier.wait()

        return average


def test_replicated_stages_with_one_micro_batch_in_flight_are_sequential_sgd() -> None:
    """Two stages of two replicas each: replicas take micro-batches in turn and average
    their gradients before each update, so with one micro-batch in flight per replica the
    run is sequential SGD over pairs of micro-batches."""
    from distbench.strategies.pipeline.pipedream import replica_actions

    model = _model()
    data = _data()
    reference = copy.deepcopy(model)
    optimizer = _sgd(reference.parameters())
    for a in range(0, TOTAL, 2):
        x = torch.cat([data[a][0], data[a + 1][0]])
        y = torch.cat([data[a][1], data[a + 1][1]])
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(reference(x), y).backward()
        optimizer.step()

    cuts, replicas = [(0, 2), (2, 5)], 2
    queues: dict = defaultdict(queue.Queue)
    hidden = torch.zeros_like(model[0:2](torch.zeros(MICRO, 6)).detach())
    likes = [torch.zeros(MICRO, 6), hidden, torch.zeros(MICRO, 3)]
    averages = [ThreadAverage(replicas) for _ in cuts]
    stages, errors = [], []
    for s, (start, stop) in enumerate(cuts):
        for r in range(replicas):
            module = copy.deepcopy(model[start:stop])
            rank = s * replicas + r
            stages.append(
                (s, r, PipeDreamStage(
                    module, _sgd(module.parameters()), QueueTransport(rank, queues),
                    (lambda k: k % replicas) if s == 1 else None,
                    (lambda k: replicas + k % replicas) if s == 0 else None,
                    likes[s], likes[s + 1], stash=False,
                    average=averages[s].for_replica(r),
                ))
            )  # fmt: skip

    def work(s: int, r: int, stage: PipeDreamStage) -> None:
        try:
            actions = replica_actions(s, len(cuts), TOTAL, r, replicas, in_flight=1)
            stage.run(actions, lambda k: data[k])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=item) for item in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for r in range(replicas):  # every replica of a stage holds the same weights
        trained = nn.Sequential(*stages[r][2].module.children(),
                                *stages[replicas + r][2].module.children())  # fmt: skip
        for ours, theirs in zip(trained.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_vertical_sync_runs_every_stage_on_the_first_stages_version() -> None:
    """With vertical sync a micro-batch's forward uses, at every stage, the weight version
    the first stage used for it, and each gradient is that version's."""
    model = _model()
    cuts = [(0, 2), (2, 4), (4, 5)]
    firsts = [copy.deepcopy(model[a:b]) for a, b in cuts]
    stages = _pipeline(model, cuts, in_flight=None, vertical_sync=True)
    seen = [{k: v for k, v, _ in stage.versions} for stage in stages]
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][TOTAL - 1] == TOTAL - 3  # the first stage runs two micro-batches ahead
    middle = stages[1]
    weights = _weights_by_version(firsts[1], middle.trace or [])
    for record in middle.trace or []:
        params = {n: t.clone().requires_grad_(True) for n, t in weights[record["version"]].items()}
        out = torch.func.functional_call(firsts[1], params, (record["inputs"],))
        grads = torch.autograd.grad(out, list(params.values()), record["grad_out"])
        for name, grad in zip(params, grads, strict=True):
            torch.testing.assert_close(grad, record["applied"][name], rtol=1e-5, atol=1e-7)


def test_a_stream_stopped_at_a_step_end_leaves_the_forwards_sent_ahead_in_transit() -> None:
    """1F1B runs forwards of the next step before the step's last backward: when a target
    stops the stream there, each stage has been sent exactly those and must take them."""
    from distbench.strategies.pipeline.pipedream import (
        forwarded_by_step_end,
        in_transit_at_step_end,
    )

    total, m = 40, 4
    three = (1, 1, 1)
    assert forwarded_by_step_end(0, three, total, 0, m, 0) == set(range(6))
    assert forwarded_by_step_end(1, three, total, 0, m, 0) == set(range(5))
    assert forwarded_by_step_end(2, three, total, 0, m, 0) == set(range(4))
    assert in_transit_at_step_end(0, three, total, 0, m, 0) == []
    assert in_transit_at_step_end(1, three, total, 0, m, 0) == [5]
    assert in_transit_at_step_end(2, three, total, 2, m, 0) == [12]
    # the stream's end leaves nothing
    assert in_transit_at_step_end(2, three, total, total // m - 1, m, 0) == []
    # a replicated stage: each replica takes the micro-batches it holds
    shape = (1, 2)
    transit = [in_transit_at_step_end(1, shape, total, 0, m, r) for r in range(2)]
    assert all(k % 2 == r for r, ks in enumerate(transit) for k in ks)
    sent = forwarded_by_step_end(0, shape, total, 0, m, 0)
    received = set().union(*(forwarded_by_step_end(1, shape, total, 0, m, r) for r in range(2)))
    assert sorted(k for ks in transit for k in ks) == sorted(sent - received)


def test_replicated_1f1b_orders_never_deadlock() -> None:
    """Every shape the planner may choose (up to five stages, replica counts dividing four
    micro-batches) runs to the end with ``stage_depths``; with every replica as deep as an
    unreplicated stage (S - s in flight each), some do not — e.g. one stage, then four
    replicas, then one, whose first stage must keep eight in flight instead of three."""
    from distbench.strategies.pipeline.pipedream import deadlocks, stage_depths

    def orders(shape: tuple[int, ...], depths: list[int]) -> dict[tuple[int, int], list[Action]]:
        stages = len(shape)
        return {
            (s, j): replica_actions(s, stages, 32, j, r, depths[s])
            for s, r in enumerate(shape)
            for j in range(r)
        }

    def plain(shape: tuple[int, ...]) -> list[int]:
        return [len(shape) - s for s in range(len(shape))]

    shapes = [shape for n in range(1, 6) for shape in itertools.product((1, 2, 4), repeat=n)]
    assert not [s for s in shapes if deadlocks(orders(s, stage_depths(s)), len(s))]
    assert deadlocks(orders((1, 4, 1), plain((1, 4, 1))), 3)
    assert stage_depths((1, 4, 1)) == [8, 2, 1]
    # where PipeDream's depths do not deadlock they are kept
    assert stage_depths((4, 1, 1, 1, 1)) == plain((4, 1, 1, 1, 1)) == [5, 4, 3, 2, 1]
