"""PipeDream's replicated stages over gloo: four processes, two stages of two replicas
each, talking through ``DistTransport`` (point-to-point with a tag per
micro-batch) and averaging the replicas' gradients through a process group of the stage.
With one micro-batch in flight per replica the run is sequential SGD over pairs of
micro-batches, which the test checks against training the whole model in one process."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from distbench.harness.processes import free_port

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

TOTAL, MICRO = 8, 4

WORKER = r"""
import json, sys
import torch, torch.distributed as dist
from torch import nn
from distbench.strategies.pipeline.pipedream import DistTransport, PipeDreamStage, replica_actions

rank, out = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", rank=rank, world_size=4)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
g = torch.Generator().manual_seed(1)
data = [(torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(8)]
groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]  # every rank creates both
stage, replica = divmod(rank, 2)

def average(grads):
    flat = torch.cat([t.reshape(-1) for t in grads])
    dist.all_reduce(flat, group=groups[stage])
    flat /= 2
    offset = 0
    for t in grads:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()

module = model[0:2] if stage == 0 else model[2:5]
hidden = torch.zeros(4, 16)
runtime = PipeDreamStage(
    module, torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9), DistTransport(),
    None if stage == 0 else (lambda k: k % 2), (lambda k: 2 + k % 2) if stage == 0 else None,
    torch.zeros(4, 6) if stage == 0 else hidden, hidden if stage == 0 else torch.zeros(4, 3),
    stash=False, average=average,
)
runtime.run(replica_actions(stage, 2, 8, replica, 2, in_flight=1), lambda k: data[k])
runtime.transport.wait_sends()
weights = {n: p.detach().tolist() for n, p in module.named_parameters()}
json.dump({"stage": stage, "replica": replica, "weights": weights}, open(out, "w"))
dist.barrier()
dist.destroy_process_group()
"""


def test_replicated_stage_over_gloo_is_sequential_sgd(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / f"r{r}.json")],
                         env=env)
        for r in range(4)
    ]  # fmt: skip
    try:
        codes = [p.wait(timeout=150) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0, 0, 0]
    results = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(4)]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    reference = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(8)
    ]
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for a in range(0, TOTAL, 2):
        optimizer.zero_grad()
        x, y = torch.cat([data[a][0], data[a + 1][0]]), torch.cat([data[a][1], data[a + 1][1]])
        nn.CrossEntropyLoss()(reference(x), y).backward()
        optimizer.step()
    expected = {n: p.detach() for n, p in reference.named_parameters()}
    for result in results:  # a slice of a Sequential keeps the whole model's names
        for name, value in result["weights"].items():
            torch.testing.assert_close(torch.tensor(value), expected[name], rtol=1e-5, atol=1e-6)
