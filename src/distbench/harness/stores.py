"""Rendezvous stores that listen on one address, never the wildcard.

A c10d ``TCPStore`` server has no authentication, and whatever host name it is given it
listens on every interface (upstream: pytorch issue 173909). Anyone who can reach the
machine while a run is up could then read and overwrite the run's rendezvous keys. torch
offers two hooks that let us keep its own store and its own launcher and still choose the
address:

- ``master_listen_fd``: the server accepts on a socket we bound ourselves;
- ``multi_tenant=True``: every ``TCPStore`` of one process that names the same port shares
  one server. torchrun's static rendezvous creates its store that way, so a multi-tenant
  server we start first, on our socket, is the one torchrun then uses.

:func:`bound_store` does both; ``harness.torchrun_bound`` starts it before handing over to
torchrun, and the profile's two-host link probe uses it instead of ``env://``.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import torch.distributed as dist

LISTEN_BACKLOG = 1024
#: Every store served from this process, with its socket: the server accepts on the
#: socket's descriptor, so neither may be collected while the process runs.
_SERVING: list[tuple[dist.TCPStore, socket.socket]] = []


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: any free one) and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(LISTEN_BACKLOG)
    return sock


def bound_store(
    host: str, port: int, timeout: float, world_size: int | None = None
) -> dist.TCPStore:
    """A multi-tenant ``TCPStore`` server listening on ``host:port`` only, served for as
    long as this process lives.

    ``world_size`` None leaves the store's count of joined clients alone, so that a
    rendezvous that later opens the same port with its own world size (torchrun's) counts
    exactly its own nodes.
    """
    sock = listening_socket(host, port)
    store = dist.TCPStore(
        host,
        port,
        world_size,
        True,
        timedelta(seconds=timeout),
        wait_for_workers=False,
        multi_tenant=True,
        master_listen_fd=sock.fileno(),
    )
    _SERVING.append((store, sock))
    return store
