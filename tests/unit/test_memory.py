"""Evaluation's peak memory measured apart from training's."""

from __future__ import annotations

import resource

import numpy as np
import torch

from distbench.measurement import memory


def test_an_evaluation_peak_is_its_own_and_training_keeps_the_earlier_peak() -> None:
    cpu = torch.device("cpu")
    held = np.ones(40_000_000 // 8)  # 40 MB resident before the evaluation
    held[:] = 2.0
    with memory.evaluation_peak(cpu) as peak:
        big = np.ones(200_000_000 // 8)  # 200 MB touched only during the evaluation
        big[:] = 3.0
        del big
    assert peak.rss_bytes is not None
    assert peak.rss_bytes >= 200_000_000
    # the kernel's mark was reset after the evaluation: it no longer holds the
    # evaluation's peak, while the peak before it is kept for the run's figure
    kernel_mark = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert kernel_mark < peak.rss_bytes
    assert memory.OUTSIDE_EVALUATION.rss_bytes >= 40_000_000
    assert memory.process_peak_rss() >= memory.OUTSIDE_EVALUATION.rss_bytes
    del held
