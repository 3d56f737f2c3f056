"""Parameter-server strategies: ``ps-sync-join``, ``ps-sync-split``, ``ps-async``.

Where to start: ``strategy.py`` (roles, the worker's step, the end of a run), then
``client.py`` (pull/push from a worker), ``server.py`` (a unit's weights, optimizer,
versions, semaphore and serve loop), ``transport.py`` (the messages over torch.distributed
point-to-point) and ``sharding.py`` (which unit holds which tensor). ``docs/ps.md`` explains
flags, semantics and the phases of the breakdown.
"""

from distbench.strategies.ps.async_ import PSAsync
from distbench.strategies.ps.strategy import ParameterServer
from distbench.strategies.ps.sync import PSSyncJoin, PSSyncSplit

__all__ = ["PSAsync", "PSSyncJoin", "PSSyncSplit", "ParameterServer"]
