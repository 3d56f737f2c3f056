"""Which server unit holds which tensor, and where each tensor lives in the flat buffers.

Start at ``predict.formulas.assign_greedy`` (the thesis' algorithm 3.7: tensors in model
order, each to the unit with the smallest total assigned size so far, ties to the first
unit) and :func:`build_layout`, which turns a model into a :class:`Layout`: the
transferred tensors (parameters and floating-point buffers) laid out unit by unit in one
flat float32 buffer, so that a pull from unit ``u`` or a push to it is one contiguous
slice.

A central server is the special case of one unit holding everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from distbench.predict.formulas import assign_greedy


@dataclass(frozen=True)
class Entry:
    """One transferred tensor: its name, whether it is a parameter, and where it lives."""

    name: str
    is_param: bool
    shape: tuple[int, ...]
    numel: int
    unit: int  # the rank of the server unit that holds it
    offset: int  # start in the worker's flat buffer


@dataclass(frozen=True)
class Region:
    """The contiguous slice ``[start, stop)`` of the flat buffer that one unit serves."""

    unit: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Layout:
    """All transferred tensors, grouped by unit; identical on every rank."""

    entries: tuple[Entry, ...]
    regions: tuple[Region, ...]

    @property
    def total(self) -> int:
        return sum(r.size for r in self.regions)

    def region(self, unit: int) -> Region:
        return next(r for r in self.regions if r.unit == unit)

    def entries_of(self, unit: int) -> list[Entry]:
        return [e for e in self.entries if e.unit == unit]

    def describe(self) -> dict[str, Any]:
        """The assignment as reported in the result: tensor -> unit, and elements per unit."""
        return {
            "assignment": {e.name: e.unit for e in self.entries},
            "unit_elements": {str(r.unit): r.size for r in self.regions},
        }


def transferred_tensors(model: nn.Module) -> list[tuple[str, bool, tuple[int, ...], int]]:
    """(name, is_param, shape, numel) of what the servers hold: every parameter and every
    floating-point buffer (BatchNorm running statistics). Integer buffers such as
    ``num_batches_tracked`` stay on each worker, which counts its own forward passes."""
    found = [(n, True, tuple(p.shape), p.numel()) for n, p in model.named_parameters()]
    found += [
        (n, False, tuple(b.shape), b.numel())
        for n, b in model.named_buffers()
        if b.is_floating_point()
    ]
    return found


def build_layout(model: nn.Module, units: list[int]) -> Layout:
    """Assign the model's tensors to ``units`` (ranks) greedily and lay them out by unit."""
    tensors = transferred_tensors(model)
    owners = assign_greedy([numel for *_, numel in tensors], len(units))
    entries: list[Entry] = []
    regions: list[Region] = []
    offset = 0
    for index, unit in enumerate(units):
        start = offset
        for (name, is_param, shape, numel), owner in zip(tensors, owners, strict=True):
            if owner == index:
                entries.append(Entry(name, is_param, shape, numel, unit, offset))
                offset += numel
        regions.append(Region(unit, start, offset))
    return Layout(tuple(entries), tuple(regions))
