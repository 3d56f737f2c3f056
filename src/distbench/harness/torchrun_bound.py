"""torchrun, with its rendezvous store listening on the master address only.

``python -m distbench.harness.torchrun_bound ARGS`` is ``python -m torch.distributed.run
ARGS``: the same argument list, handed to torchrun's own ``main``. The one difference is
that on node 0 a multi-tenant store server is first started on a socket bound to
``--master-addr`` (``harness.stores``), and torchrun's static rendezvous, which opens its
store multi-tenant on the same port, shares that server instead of listening on every
interface. For a run on one machine the address is 127.0.0.1, so nothing of the run can be
reached from another host; for a cluster it is the address node 0 was told to use.
"""

from __future__ import annotations

import argparse
import os
import sys


def rendezvous_endpoint(argv: list[str]) -> tuple[str, int, int, float]:
    """(master address, master port, node rank, rendezvous timeout) from torchrun's flags."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--master-addr", "--master_addr", default="127.0.0.1")
    parser.add_argument("--master-port", "--master_port", type=int, default=29500)
    parser.add_argument("--node-rank", "--node_rank", type=int, default=0)
    parser.add_argument("--rdzv-conf", "--rdzv_conf", default="")
    known, _ = parser.parse_known_args(argv)
    conf = dict(item.split("=", 1) for item in known.rdzv_conf.split(",") if "=" in item)
    timeout = float(conf.get("timeout", 900))
    return known.master_addr, known.master_port, known.node_rank, timeout


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    host, port, node_rank, timeout = rendezvous_endpoint(args)
    if node_rank == 0:
        from distbench.harness.stores import bound_store

        bound_store(host, port, timeout)  # torchrun's store from now on
    from torch.distributed.run import main as torchrun_main

    torchrun_main(args)  # raises when a rank failed: that path exits the usual way
    # Every rank has exited and the rendezvous is closed: skip the interpreter's
    # finalization (about a second with torch loaded, in every round of a run).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
