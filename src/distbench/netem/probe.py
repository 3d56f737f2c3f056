"""What an emulated link really delivers: effective bandwidth and latency between two hosts.

:func:`measure_link` is the plain function behind ``distbench profile`` under a network:
it builds a 2-host network with the given spec and runs this module on both hosts
(``python -m distbench.netem.linkprobe``), which measures with gloo point-to-point:

- latency: half the median round trip of a 1-element tensor (ping-pong);
- bandwidth: bytes / (time to send one message and receive a 1-element ack - 2 latency),
  median over repeats, after one warm-up transfer (TCP slow start, connection set-up).

The message is about two seconds of traffic at the configured rate (1-64 MiB), so the
token bucket's initial burst does not inflate the figure.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple

from distbench.errors import UserError
from distbench.netem.spec import NetworkSpec, parse_network

MIB = 1024 * 1024
RESULT_MARK = "LINK "  # the line linkprobe.py prints on rank 0


class LinkMeasurement(NamedTuple):
    """Unpacks as ``(bandwidth_bytes_per_s, latency_s)``."""

    bandwidth_bytes_per_s: float
    latency_s: float


def probe_bytes(spec: NetworkSpec | None) -> int:
    """About 2 s of traffic at the slower direction's rate, 1-64 MiB."""
    rate = spec.rate_bit_s if spec is not None else None
    if rate is None:
        return 64 * MIB
    return int(min(64 * MIB, max(1 * MIB, rate / 8 * 2)))


def measure_link(
    network: str | NetworkSpec | None,
    message_bytes: int | None = None,
    repeats: int = 3,
    timeout: float = 300.0,
) -> LinkMeasurement:
    """Effective bandwidth (bytes/s) and one-way latency (s) between two emulated hosts.

    ``network`` is a ``--network`` spec (``"bandwidth=100mbit"``), a parsed spec, or None for
    an unshaped veth link. Needs root (network namespaces); raises ``UserError`` otherwise.
    """
    from distbench.netem.multihost import run_on_hosts
    from distbench.netem.namespaces import check_spec_supported, emulated_network

    spec = parse_network(network) if isinstance(network, str) else network
    check_spec_supported(spec)
    size = message_bytes or probe_bytes(spec)
    with emulated_network(spec, 2) as net:
        results = run_on_hosts(
            net,
            lambda host: [
                sys.executable,
                "-m",
                "distbench.netem.linkprobe",
                "--rank",
                str(host.index),
                "--bytes",
                str(size),
                "--repeats",
                str(repeats),
            ],
            {**os.environ, "OMP_NUM_THREADS": "1"},
            timeout,
        )
    return _parse_result(results)


def _parse_result(results: list[tuple[int, str]]) -> LinkMeasurement:
    for code, output in results:
        if code != 0:
            tail = output.strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"link probe failed (exit code {code}): {tail[0][:300]}")
    for line in results[0][1].splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line.removeprefix(RESULT_MARK))
            return LinkMeasurement(data["bandwidth_bytes_per_s"], data["latency_s"])
    raise UserError("link probe printed no result")
