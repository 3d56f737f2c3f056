"""One side of ``distbench profile``'s link measurement across two emulated hosts.

``calibrate.measure_links`` runs ``python -m distbench.profiling.linkhost --rank R --plan
JSON`` on each host of a 2-host emulated network (``netem.multihost.run_on_hosts`` sets
``MASTER_ADDR``/``MASTER_PORT`` and points gloo at the host's interface), so the ping-pong
and the sweeps cross the shaped link exactly as a run's traffic does. The measurements are
the same functions as on loopback (``calibrate.link_measurements``); rank 0 prints one
``LINKS {json}`` line. Kept apart from ``calibrate.py`` so that ``-m`` does not run an
already-imported module.
"""

from __future__ import annotations

import argparse
import json

RESULT_MARK = "LINKS "


def main(argv: list[str] | None = None) -> int:
    import torch

    from distbench.profiling.primitives import LinkPlan, join_group, leave_group, link_measurements

    parser = argparse.ArgumentParser(description="one host of the profile's link measurement")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--plan", required=True, help="LinkPlan as JSON")
    args = parser.parse_args(argv)
    plan = LinkPlan(**json.loads(args.plan))
    torch.set_num_threads(1)
    join_group(args.rank, 2, plan.timeout)
    result = link_measurements(args.rank, plan)
    leave_group()
    if args.rank == 0:
        print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
