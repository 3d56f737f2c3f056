"""Which TCP sockets a set of processes listens on, read from ``/proc``.

A socket a process owns appears among its file descriptors as ``socket:[INODE]``; the
listening ones are the rows of ``/proc/PID/net/tcp`` and ``tcp6`` (the tables of that
process's network namespace) in state ``0A`` with that inode. The tests of the security
promise "a local run listens on loopback only" use this, on the processes of a live run.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class ListeningSocket:
    """One listening TCP socket: its owner, address, port and network namespace."""

    pid: int
    name: str
    address: str
    port: int
    netns: str

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.address).is_unspecified

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def _decode_address(hex_address: str) -> str:
    """``/proc/net/tcp``'s hex address (host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def network_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def listening_sockets(pid: int) -> list[ListeningSocket]:
    """The TCP sockets ``pid`` listens on (empty when it is gone)."""
    inodes = socket_inodes(pid)
    if not inodes:
        return []
    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        name = "?"
    netns = network_namespace(pid)
    found = []
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != TCP_LISTEN or inode not in inodes:
                continue
            hex_address, hex_port = local.split(":")
            found.append(
                ListeningSocket(pid, name, _decode_address(hex_address), int(hex_port, 16), netns)
            )
    return found


def tree_listening_sockets(root: int) -> list[ListeningSocket]:
    """Every listening socket of ``root`` and all its descendants, now."""
    try:
        family = [root, *(child.pid for child in psutil.Process(root).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []
    return [sock for pid in family for sock in listening_sockets(pid)]
