"""The learnable synthetic task: its labels follow its inputs, unlike ``synthetic``'s."""

from __future__ import annotations

import torch

from distbench.data import load_dataset
from distbench.data.patterns import class_patterns


def nearest_pattern_accuracy(name: str, seed: int = 0) -> float:
    """Classify each test sample by the class pattern it correlates with most."""
    data = load_dataset(name, None, (3, 16, 16), 10, seed=seed, train=False)
    x, y = data.batch(torch.arange(len(data)))  # type: ignore[attr-defined]
    patterns = class_patterns((3, 16, 16), 10).flatten(1)
    predicted = (x.flatten(1) @ patterns.T).argmax(dim=1)
    return float((predicted == y).float().mean())


def test_patterns_can_be_learned_and_random_labels_cannot() -> None:
    assert nearest_pattern_accuracy("patterns") > 0.9
    assert nearest_pattern_accuracy("synthetic") < 0.3


def test_the_task_is_the_same_for_every_seed_while_its_samples_differ() -> None:
    a = load_dataset("patterns", None, (1, 8, 8), 4, seed=1, train=True)
    b = load_dataset("patterns", None, (1, 8, 8), 4, seed=2, train=True)
    test = load_dataset("patterns", None, (1, 8, 8), 4, seed=1, train=False)
    assert (len(a), len(test)) == (2048, 512)
    assert not torch.equal(a[0][0], b[0][0]) and not torch.equal(a[0][0], test[0][0])
    assert nearest_pattern_accuracy("patterns", seed=1) > 0.9
    assert nearest_pattern_accuracy("patterns", seed=2) > 0.9
    assert float(a[0][0].abs().max()) <= 1.0
