"""Parameter-server logic that needs no processes: the greedy assignment (thesis algorithm
3.7), the flat layout, the worker's flat views, a server unit's updates and semaphore,
and the strategies' validation, roles and process counts."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import torch
from torch import nn

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.registry import check_run, processes
from distbench.strategies.ps.client import Replica
from distbench.strategies.ps.server import Admission, ShardServer, staleness_summary
from distbench.strategies.ps.sharding import assign_greedy, build_layout
from distbench.strategies.ps.strategy import initial_slice
from distbench.strategies.registry import STRATEGIES


def test_greedy_assigns_each_tensor_to_least_loaded_unit_in_order() -> None:
    assert assign_greedy([10, 5, 4, 3, 8], 2) == [0, 1, 1, 1, 0]  # loads 18 | 12
    assert assign_greedy([1, 1, 1], 3) == [0, 1, 2]  # ties go to the first unit
    assert assign_greedy([7, 7, 7], 1) == [0, 0, 0]
    assert assign_greedy([], 4) == []
    with pytest.raises(ValueError):
        assign_greedy([1], 0)


def test_greedy_keeps_model_order_not_sorted() -> None:
    # Sorting largest-first would give [0, 1, 1]; algorithm 3.7 takes tensors as listed.
    assert assign_greedy([1, 2, 3], 2) == [0, 1, 0]


class TinyBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


def test_layout_groups_tensors_by_unit_and_skips_integer_buffers() -> None:
    model = TinyBN()
    layout = build_layout(model, [5, 7])
    names = [e.name for e in layout.entries]
    assert "bn.num_batches_tracked" not in names
    assert {"bn.running_mean", "bn.running_var", "conv.weight", "fc.bias"} <= set(names)
    total = sum(p.numel() for p in model.parameters()) + 4  # + running mean/var of 2 channels
    assert layout.total == total
    assert [r.unit for r in layout.regions] == [5, 7]
    assert layout.regions[0].stop == layout.regions[1].start
    for entry in layout.entries:
        region = layout.region(entry.unit)
        assert region.start <= entry.offset and entry.offset + entry.numel <= region.stop
    described = layout.describe()
    assert set(described["assignment"].values()) == {5, 7}
    assert sum(described["unit_elements"].values()) == total


def test_replica_views_receive_weights_and_accumulate_gradients() -> None:
    torch.manual_seed(0)
    model = TinyBN()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    layout = build_layout(model, [0, 1])
    replica = Replica(model, layout, torch.device("cpu"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[name])  # binding kept the values
    replica.state.add_(1.0)  # a "pull" writes the flat buffer: the model sees it
    torch.testing.assert_close(model.fc.bias, reference["fc.bias"] + 1.0)
    replica.zero_grads()
    model(torch.randn(4, 1, 5, 5)).sum().backward()
    grad = model.fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    entry = next(e for e in layout.entries if e.name == "fc.weight")
    flat = replica.grads[entry.offset : entry.offset + entry.numel].view(entry.shape)
    assert flat.data_ptr() == grad.data_ptr()  # autograd accumulated into the flat buffer
    replica.stage_push()  # buffers travel in the gradient message
    mean = next(e for e in layout.entries if e.name == "bn.running_mean")
    torch.testing.assert_close(
        replica.grads[mean.offset : mean.offset + mean.numel], model.bn.running_mean
    )


def server_for(model: nn.Module, synchronous: bool, workers: int = 2, **cfg: object) -> ShardServer:
    config = RunConfig(model="lenet5", lr=0.1, **cfg)  # type: ignore[arg-type]
    layout = build_layout(model, [99])
    entries = layout.entries_of(99)
    return ShardServer(
        config,
        layout.region(99),
        entries,
        initial_slice(model, entries),
        list(range(workers)),
        synchronous,
    )


def test_sync_server_averages_in_worker_order_then_steps_like_sgd() -> None:
    model = nn.Linear(2, 1)
    server = server_for(model, synchronous=True, momentum=0.9, weight_decay=0.01)
    before = server.state.clone()
    g0, g1 = torch.full_like(before, 1.0), torch.full_like(before, 3.0)
    assert server.accept(0, g0, step=0, computed_on=0) == 0.0  # waits for worker 1
    assert server.version == 0
    assert server.accept(1, g1, step=0, computed_on=0) > 0.0  # the last one updates
    assert server.version == 1
    expected = nn.Linear(2, 1)
    expected.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for p in expected.parameters():
        p.grad = torch.full_like(p, 2.0)
    optimizer.step()
    flat = torch.cat([p.detach().reshape(-1) for p in expected.parameters()])
    torch.testing.assert_close(server.state, flat)
    assert not torch.equal(server.state, before)


def test_async_server_records_staleness_per_applied_gradient() -> None:
    server = server_for(nn.Linear(2, 1), synchronous=False)
    grad = torch.ones(server.region.size)
    server.accept(0, grad, step=0, computed_on=0)  # staleness 0
    server.accept(1, grad, step=0, computed_on=0)  # computed on 0, applied at 1
    server.accept(0, grad, step=1, computed_on=1)  # staleness 1
    summary = server.summary()["staleness"]
    assert summary["histogram"] == {"0": 1, "1": 2}
    assert summary["max"] == 1 and summary["mean"] == pytest.approx(2 / 3)
    assert server.version == 3


def test_lost_worker_async_finishes_sync_fails() -> None:
    relaxed = server_for(nn.Linear(2, 1), synchronous=False)
    relaxed.lose(1, "killed")
    relaxed.finish(0)  # returns: worker 1 counts as done
    assert relaxed.reporter() == 0
    strict = server_for(nn.Linear(2, 1), synchronous=True)
    strict.lose(1, "killed")
    with pytest.raises(RuntimeError, match="lost in a synchronous run"):
        strict.wait_version(1)


def test_admission_serializes_and_measures_queue() -> None:
    gate = Admission(enabled=True)
    intervals: list[tuple[float, float, float]] = []
    together = threading.Barrier(4)  # all four ask at once, however busy the machine

    def transfer() -> None:
        together.wait(timeout=30)
        with gate.admit() as queued:
            start = time.perf_counter()
            time.sleep(0.02)
            intervals.append((start, time.perf_counter(), queued))

    threads = [threading.Thread(target=transfer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(intervals)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))
    # Asked together, three of the four queue; the last waits for three transfers (0.06 s)
    # unless the machine starts it late; it always waits for more than one whole transfer.
    assert max(q for *_, q in intervals) >= 0.02
    with Admission(enabled=False).admit() as queued:
        assert queued == 0.0


def test_staleness_summary_of_nothing() -> None:
    from collections import Counter

    assert staleness_summary(Counter()) == {"histogram": {}, "count": 0, "mean": None, "max": None}


def test_strategies_processes_roles_and_batches() -> None:
    central = RunConfig(model="lenet5", strategy="ps-async", workers=3)
    sharded = central.replace(servers="sharded")
    assert processes(central) == 4 and processes(sharded) == 3
    cls = STRATEGIES["ps-async"]
    assert [cls.rank_role(central, r) for r in range(4)] == ["worker"] * 3 + ["server"]
    assert {cls.rank_role(sharded, r) for r in range(3)} == {"worker"}
    assert cls.synchronous is False
    assert cls.survives_worker_loss(central) and not cls.survives_worker_loss(sharded)
    split = RunConfig(model="lenet5", strategy="ps-sync-split", workers=2, batch_size=16)
    join = split.replace(strategy="ps-sync-join")
    assert STRATEGIES["ps-sync-split"].local_batch(split) == 8
    assert STRATEGIES["ps-sync-split"].global_batch(split) == 16
    assert STRATEGIES["ps-sync-join"].local_batch(join) == 16
    assert STRATEGIES["ps-sync-join"].global_batch(join) == 32


def test_sync_split_batch_must_divide_by_workers() -> None:
    with pytest.raises(UserError, match="must divide evenly"):
        check_run(RunConfig(model="lenet5", strategy="ps-sync-split", workers=3, batch_size=8))
