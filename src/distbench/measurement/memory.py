"""Peak memory of a process, with evaluation kept apart from training.

Start at :func:`evaluation_peak`. The kernel keeps one high-water mark of a process's
resident memory (``VmHWM``, which ``getrusage`` reports as ``ru_maxrss``); writing ``5`` to
``/proc/self/clear_refs`` resets it to the current resident size. Around an evaluation the
mark is read (the peak so far, kept as :data:`OUTSIDE_EVALUATION`), reset, read again after
the evaluation (its own peak), and reset once more, so training goes on measuring its own.
:func:`process_peak_rss` then gives the whole run's peak outside evaluations. On CUDA the
allocator's peak is handled the same way. Where the file cannot be written the evaluation
peak is None and nothing is reset.

Standard library only until CUDA is asked for (torch is imported there), so that the
TensorFlow and MXNet workers can load it by file path and measure their evaluations alike.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class PeakOutsideEvaluation:
    """The highest marks read before a reset: training's peaks the kernel forgot."""

    rss_bytes: int = 0
    allocated_bytes: int = 0


OUTSIDE_EVALUATION = PeakOutsideEvaluation()


@dataclass
class EvaluationPeak:
    """Filled in when the evaluation ends (None where it cannot be measured)."""

    rss_bytes: int | None = None
    allocated_bytes: int | None = None


def _high_water_rss() -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


def _reset_rss_mark() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@contextmanager
def evaluation_peak(device: torch.device | None = None) -> Iterator[EvaluationPeak]:
    """Measure the peak memory of the block apart from the rest of the run (``device``
    None: a process without torch, resident memory only)."""
    peak = EvaluationPeak()
    before = _high_water_rss()
    resettable = before is not None and _reset_rss_mark()
    if resettable and before is not None:
        OUTSIDE_EVALUATION.rss_bytes = max(OUTSIDE_EVALUATION.rss_bytes, before)
    cuda = device is not None and device.type == "cuda"
    if cuda:
        import torch

        allocated = int(torch.cuda.max_memory_allocated(device))
        OUTSIDE_EVALUATION.allocated_bytes = max(OUTSIDE_EVALUATION.allocated_bytes, allocated)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peak
    finally:
        if resettable:
            peak.rss_bytes = _high_water_rss()
            _reset_rss_mark()
        if cuda:
            import torch

            peak.allocated_bytes = int(torch.cuda.max_memory_allocated(device))
            torch.cuda.reset_peak_memory_stats(device)


def process_peak_rss() -> int:
    """This process's peak resident memory outside evaluations (bytes)."""
    current = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return max(int(current), OUTSIDE_EVALUATION.rss_bytes)


def process_peak_allocated(device: torch.device) -> int:
    """The CUDA allocator's peak outside evaluations (bytes)."""
    import torch

    return max(int(torch.cuda.max_memory_allocated(device)), OUTSIDE_EVALUATION.allocated_bytes)
