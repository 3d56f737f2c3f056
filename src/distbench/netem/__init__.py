"""Emulated networks and multi-host runs on one machine (see docs/network.md).

- ``spec``: parse and validate ``--network`` values (pure, no root needed);
- ``namespaces``: build and tear down hosts (network namespaces, veth pairs, a bridge,
  ``tc tbf`` shaping), and clean up what a killed run left behind;
- ``multihost``: launch a run as one torchrun launcher per host, node files, and the network
  description stored with every result.

What a link between two emulated hosts delivers is measured by the profile
(``profiling.calibrate.measure_links(..., network=SPEC)``, on ``profiling.primitives``).
"""

from distbench.netem.multihost import (
    emulated,
    launch_hosts,
    network_info,
    preflight_network,
    resolve_nodefile,
    run_on_hosts,
)
from distbench.netem.namespaces import cleanup_stale, emulated_network
from distbench.netem.spec import NetworkSpec, parse_network

__all__ = [
    "NetworkSpec",
    "cleanup_stale",
    "emulated",
    "emulated_network",
    "launch_hosts",
    "network_info",
    "parse_network",
    "preflight_network",
    "resolve_nodefile",
    "run_on_hosts",
]
