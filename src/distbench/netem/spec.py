"""Parse ``--network`` specs such as ``bandwidth=100mbit,burst=64kb`` into a ``NetworkSpec``.

Pure logic (no subprocess, no torch), so it can be validated inside ``RunConfig`` before any
process starts. Keys, comma-separated ``key=value``:

- ``bandwidth=RATE``: the link rate of every host, both directions;
- ``up=RATE`` / ``down=RATE``: per direction (``up``: host -> network, ``down``:
  network -> host); each overrides ``bandwidth`` for its direction;
- ``burst=SIZE``: the token-bucket depth of ``tc tbf`` (default: see ``default_burst``);
- ``delay=TIME``: one-way latency between two hosts (needs the kernel's ``netem`` qdisc);
- ``mtu=BYTES``: the links' MTU (default 1500, Ethernet; 9000 emulates jumbo frames);
- ``queue=fifo|fair``: the discipline of every shaped queue. ``fifo`` (default): one
  tail-drop FIFO per link direction (``tc tbf``), in which TCP flows to or from different
  hosts share the rate unequally; ``fair``: the rate is shared equally among the peers a
  queue carries traffic for (``tc htb``, one class per peer host), as a host's
  flow-fair egress queue (Linux's ``fq_codel``/``fq``) shares it among its flows.

Rates use ``tc``'s units: ``bit kbit mbit gbit tbit`` (powers of 1000, bits per second) and
``bps kbps mbps gbps`` (*bytes* per second, as ``tc`` reads them). Sizes: ``b``, ``kb``/``k``,
``mb``/``m``, ``gb``/``g`` (powers of 1024, as ``tc``). Times: ``us``, ``ms``, ``s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distbench.errors import UserError

RATE_UNITS: dict[str, int] = {  # multiplier to bits per second
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
}
SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
}
TIME_UNITS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
KEYS = ("bandwidth", "up", "down", "burst", "delay", "mtu", "queue")
QUEUES = ("fifo", "fair")
MTU_RANGE = (576, 65535)  # IPv4's minimum datagram .. veth's maximum
MIN_BURST_BYTES = 64 * 1024  # above a 64 KiB GSO segment, so tbf never has to split one
BURST_SECONDS = 0.002  # default bucket: 2 ms of traffic at the link rate
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class NetworkSpec:
    """A validated ``--network`` value. Rates in bits/s; ``None`` leaves a direction unshaped."""

    text: str
    up_bit_s: int | None = None
    down_bit_s: int | None = None
    burst_bytes: int | None = None
    delay_s: float | None = None
    mtu: int | None = None  # None: the veth default, 1500
    queue: str = "fifo"  # one of QUEUES

    def burst_for(self, rate_bit_s: int) -> int:
        """The tbf bucket for a link of ``rate_bit_s``: the given burst or ``default_burst``."""
        return self.burst_bytes if self.burst_bytes is not None else default_burst(rate_bit_s)

    @property
    def rate_bit_s(self) -> int | None:
        """The slower direction's rate: what a bandwidth-bound transfer can expect."""
        rates = [r for r in (self.up_bit_s, self.down_bit_s) if r is not None]
        return min(rates) if rates else None

    def describe(self) -> str:
        """Short human form, e.g. ``100mbit`` or ``up 100mbit / down 1gbit, delay 5ms``."""
        if self.up_bit_s == self.down_bit_s:
            text = format_rate(self.up_bit_s)
        else:
            text = f"up {format_rate(self.up_bit_s)} / down {format_rate(self.down_bit_s)}"
        text += f", delay {self.delay_s * 1e3:g}ms" if self.delay_s else ""
        text += f", mtu {self.mtu}" if self.mtu else ""
        return text + (", fair queues" if self.queue == "fair" else "")

    def as_dict(self) -> dict[str, object]:
        """The stored form; ``burst_bytes`` is the bucket in effect (given or default)."""
        rate = self.rate_bit_s
        burst = self.burst_for(rate) if rate is not None else self.burst_bytes
        return {
            "spec": self.text,
            "up_bit_s": self.up_bit_s,
            "down_bit_s": self.down_bit_s,
            "burst_bytes": burst,
            "delay_s": self.delay_s,
            "mtu": self.mtu or 1500,
            "queue": self.queue,
        }


def default_burst(rate_bit_s: int) -> int:
    """2 ms of traffic, at least 64 KiB: enough for tbf to reach its rate at 1-10 Gbit/s
    on a kernel with a coarse timer, small enough not to distort a 1 KB message."""
    return max(MIN_BURST_BYTES, int(rate_bit_s / 8 * BURST_SECONDS))


def format_rate(rate_bit_s: int | None) -> str:
    if rate_bit_s is None:
        return "unshaped"
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if rate_bit_s >= factor and rate_bit_s % factor == 0:
            return f"{rate_bit_s // factor}{unit}"
    return f"{rate_bit_s}bit"


def _split_number(text: str, what: str, units: dict[str, float] | dict[str, int]) -> float:
    match = _NUMBER.match(text.lower())
    if not match or match.group(2) not in units:
        raise UserError(
            f"--network: bad {what} '{text}' (units: {', '.join(u for u in units if u)})"
        )
    return float(match.group(1)) * units[match.group(2)]


def parse_rate(text: str) -> int:
    """``100mbit`` -> 100_000_000 bits/s (tc units; a bare number is refused as ambiguous)."""
    bits = int(_split_number(text, "rate", RATE_UNITS))
    if bits < 8000:
        raise UserError(f"--network: rate '{text}' is below 8kbit, too slow to run anything")
    return bits


def parse_size(text: str) -> int:
    size = int(_split_number(text, "size", SIZE_UNITS))
    if size < 1500:
        raise UserError(f"--network: burst '{text}' is smaller than one 1500-byte packet")
    return size


def parse_time(text: str) -> float:
    return _split_number(text, "time", TIME_UNITS)


def parse_mtu(text: str) -> int:
    if not text.isdigit() or not MTU_RANGE[0] <= int(text) <= MTU_RANGE[1]:
        raise UserError(
            f"--network: mtu must be a whole number of bytes in "
            f"{MTU_RANGE[0]}..{MTU_RANGE[1]}, got '{text}'"
        )
    return int(text)


def parse_queue(text: str) -> str:
    value = text.strip().lower()
    if value not in QUEUES:
        raise UserError(f"--network: queue must be one of {', '.join(QUEUES)}, got '{text}'")
    return value


def _pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip():
            raise UserError(f"--network: expected key=value, got '{part}' (e.g. bandwidth=100mbit)")
        if key not in KEYS:
            raise UserError(f"--network: unknown key '{key}' (known: {', '.join(KEYS)})")
        if key in pairs:
            raise UserError(f"--network: '{key}' given twice")
        pairs[key] = value.strip()
    return pairs


def parse_network(text: str) -> NetworkSpec:
    """Validate a ``--network`` value; any mistake is one ``UserError`` line."""
    if not text or not text.strip():
        raise UserError("--network: empty spec (e.g. bandwidth=100mbit)")
    pairs = _pairs(text)
    both = parse_rate(pairs["bandwidth"]) if "bandwidth" in pairs else None
    up = parse_rate(pairs["up"]) if "up" in pairs else both
    down = parse_rate(pairs["down"]) if "down" in pairs else both
    delay = parse_time(pairs["delay"]) if "delay" in pairs else None
    burst = parse_size(pairs["burst"]) if "burst" in pairs else None
    mtu = parse_mtu(pairs["mtu"]) if "mtu" in pairs else None
    queue = parse_queue(pairs["queue"]) if "queue" in pairs else "fifo"
    if up is None and down is None and not delay and mtu is None:
        raise UserError("--network: give a rate (bandwidth=, up= or down=), a delay or an mtu")
    return NetworkSpec(
        text=text.strip(),
        up_bit_s=up,
        down_bit_s=down,
        burst_bytes=burst,
        delay_s=delay or None,
        mtu=mtu,
        queue=queue,
    )
