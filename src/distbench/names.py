"""One vocabulary for strategies across frameworks, and the old names kept as aliases.

Start at :func:`canonical_strategy`. A strategy is named after how it distributes the work,
whichever framework runs it: ``allreduce`` (synchronous data parallel with an all-reduce of
the gradients: TensorFlow's MultiWorkerMirroredStrategy, Horovod; PyTorch's is ``ddp``,
its DistributedDataParallel, which also answers to ``allreduce``), ``ps-sync-join``
(synchronous parameter server, every worker a full batch: MXNet's ``dist_sync``) and
``ps-async`` (asynchronous parameter server: TensorFlow's ParameterServerStrategy, MXNet's
``dist_async``). The adapters' first names, ``sync`` and ``async``, said neither how nor
what; they are accepted still and stored under the new ones (``store/db.py`` renames
stored runs once). Standard library only: configuration uses it before anything heavy is
imported.
"""

from __future__ import annotations

#: Per framework: a name a user may give -> the strategy it stands for.
STRATEGY_ALIASES: dict[str, dict[str, str]] = {
    "torch": {"allreduce": "ddp"},
    "tensorflow": {"sync": "allreduce", "async": "ps-async"},
    "mxnet": {"sync": "ps-sync-join", "async": "ps-async"},
    "horovod": {"sync": "allreduce"},
}


def canonical_strategy(framework: str, name: str) -> str:
    """The strategy ``name`` stands for under ``framework`` (itself when not an alias)."""
    return STRATEGY_ALIASES.get(framework, {}).get(name, name)


def aliases_of(framework: str, strategy: str) -> list[str]:
    """The other names ``strategy`` answers to under ``framework``."""
    return [a for a, c in STRATEGY_ALIASES.get(framework, {}).items() if c == strategy]


def strategy_spellings(name: str) -> list[tuple[str | None, str]]:
    """What a strategy filter that names no framework matches: (None, ``name``) — that
    stored name in any framework — and (framework, strategy) for every framework in which
    ``name`` is an alias."""
    meant = [
        (framework, aliases[name])
        for framework, aliases in sorted(STRATEGY_ALIASES.items())
        if name in aliases
    ]
    return [(None, name), *meant]
