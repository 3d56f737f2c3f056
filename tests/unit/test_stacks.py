"""Where ranks wait: reading faulthandler dumps, finding the rank programs, and the stall
rule for runs that go on after a lost worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from distbench.harness.stacks import runs_rank_program, where_ranks_wait
from distbench.harness.supervisor import lost_rank_marks, note_lost
from distbench.harness.torchrun import RunStalled, StallAfterLoss

SERVER_DUMP = """Thread 0x00007f015d3a06c0 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 331 in wait
  File "/x/src/distbench/harness/monitor.py", line 77 in _loop
  File "/usr/lib/python3.11/threading.py", line 982 in run

Thread 0x00007f015d3a0700 (most recent call first):
  File "/x/src/distbench/strategies/ps/transport.py", line 77 in wait
  File "/x/src/distbench/strategies/ps/server.py", line 341 in serve_worker
  File "/usr/lib/python3.11/threading.py", line 982 in run

Current thread 0x00007f017d626b80 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 1116 in join
  File "/x/src/distbench/strategies/ps/strategy.py", line 121 in run
  File "/x/src/distbench/harness/worker.py", line 108 in run_rank
"""


def test_where_ranks_wait_names_the_main_thread_then_busy_threads(tmp_path: Path) -> None:
    (tmp_path / "stacks_rank3.txt").write_text(SERVER_DUMP)
    (tmp_path / "stacks_rank10.txt").write_text(SERVER_DUMP.replace("line 121", "line 9"))
    assert where_ranks_wait(tmp_path) == (
        "rank 3 in join (threading.py:1116) from run (strategy.py:121); "
        "and wait (transport.py:77); "
        "rank 10 in join (threading.py:1116) from run (strategy.py:9); and wait (transport.py:77)"
    )  # the resource sampler's thread waits by design and is left out; ranks in order


def test_no_dump_means_nothing_to_say(tmp_path: Path) -> None:
    assert where_ranks_wait(tmp_path) is None


def test_only_the_rank_program_itself_is_signalled() -> None:
    assert runs_rank_program(["python3", "-u", "-m", "distbench.harness.worker", "/runs/a"])
    # torchrun names the rank program among its arguments; SIGUSR1 would end it
    torchrun = ["python3", "-m", "distbench.harness.torchrun_bound", "--nnodes=1"]
    assert not runs_rank_program([*torchrun, "-m", "distbench.harness.worker", "/runs/a"])
    assert not runs_rank_program(["python3", "-u", "-m", "distbench.harness.supervisor", "/r"])
    assert not runs_rank_program(["python3", "script.py"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_that_goes_silent_after_a_loss_is_stopped_with_where_it_waits(
    tmp_path: Path,
) -> None:
    records = tmp_path / "rank1.jsonl"
    records.write_text("")
    dumped: list[bool] = []

    def dump() -> None:
        dumped.append(True)
        (tmp_path / "stacks_rank3.txt").write_text(SERVER_DUMP)

    clock = Clock()
    watch = StallAfterLoss(tmp_path, dump, clock)
    for second in range(1, 40):  # training: a record every 5 s at most
        clock.now = float(second)
        if second % 5 == 0:
            records.write_text(records.read_text() + "{}\n")
        watch()
    assert watch.limit() == StallAfterLoss.MIN_SECONDS  # 3 × 5 s is below the floor
    clock.now = 40.0
    note_lost(tmp_path, 0, "worker process 1 killed by SIGKILL")
    assert lost_rank_marks(tmp_path) == [0]
    watch()  # sees the loss (and the lost record, which is growth)
    clock.now = 40.0 + StallAfterLoss.MIN_SECONDS
    watch()
    assert not dumped  # not yet past the limit
    clock.now += 2.0
    with pytest.raises(RunStalled, match=r"stalled after rank 0 was lost: .* rank 3 in join"):
        watch()
    assert dumped


def test_silence_without_a_loss_is_left_to_the_deadline(tmp_path: Path) -> None:
    (tmp_path / "rank0.jsonl").write_text("{}\n")
    clock = Clock()
    watch = StallAfterLoss(tmp_path, lambda: None, clock)
    for second in range(0, 3600, 10):
        clock.now = float(second)
        watch()  # an hour of silence (a long evaluation, a slow step): not a stall
