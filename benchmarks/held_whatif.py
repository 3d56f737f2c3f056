"""How does a semaphore's prediction move with what a send holds? A what-if on stored runs.

    python benchmarks/held_whatif.py STORE --model M [--held 2.49,2.0,1.5,1.3]
    python benchmarks/held_whatif.py STORE --model M --servers sharded --held 2.5

For every stored ok run of ``M`` with a ``--servers`` server (central unless given)
behind the semaphore, the simulator's prediction (``simulated.simulate_run``, as
``validate --engine simulator``) against the measured time per step: with the newest
profile as stored; with its weights' figure (``send_held_weight_bytes``) removed, so the
large message's stands; and with the held bytes set to each of ``--held`` (MB; both
figures). The profile's probe reading moves from profile to profile (docs/emulation.md),
and this shows how far one server's prediction moves with it. Nothing here enters a
prediction.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

from distbench.config import RunConfig
from distbench.predict.core import case_of
from distbench.predict.simulated import simulate_run
from distbench.profiling.profiles import Profile, find_profile


def errors(store: str, model: str, profile: Profile, servers: str) -> list[str]:
    """``strategy xN +e%`` of every semaphore run of ``model`` with ``servers`` servers,
    predicted from ``profile``."""
    query = (
        "select strategy, workers, config, step_time_median from runs"
        " where model = ? and status = 'ok' order by strategy, workers, created_at"
    )
    with sqlite3.connect(store) as db:
        rows = db.execute(query, (model,)).fetchall()
    cells = []
    for strategy, workers, config, measured in rows:
        cfg = RunConfig.from_dict(json.loads(config))
        if cfg.servers != servers or not cfg.ps_semaphore:
            continue
        predicted = simulate_run(case_of(cfg), profile).step_time
        cells.append(f"{strategy} x{workers} {(predicted / measured - 1) * 100:+.1f}%")
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--model", required=True)
    parser.add_argument("--held", default="", help="MB, comma-separated")
    parser.add_argument("--servers", choices=("central", "sharded"), default="central")
    args = parser.parse_args()
    profile = find_profile(args.store, args.model) if Path(args.store).exists() else None
    if profile is None:
        print(f"held_whatif: no profile of {args.model} in {args.store}", file=sys.stderr)
        return 2
    held, of_weights = profile.send_held_bytes or 0.0, profile.send_held_weight_bytes
    weights_label = f"{of_weights / 1e6:.2f} MB" if of_weights else "none"
    print(f"{args.model}: the probe held {held / 1e6:.2f} MB of its large message,")
    print(f"{weights_label} of the weights' message")
    store, model, servers = args.store, args.model, args.servers
    print("  as stored:              " + "; ".join(errors(store, model, profile, servers)))
    large_only = replace(profile, send_held_weight_bytes=None)
    print("  large message's figure: " + "; ".join(errors(store, model, large_only, servers)))
    for mb in [float(x) for x in args.held.split(",") if x]:
        what_if = replace(profile, send_held_bytes=mb * 1e6, send_held_weight_bytes=mb * 1e6)
        cells = errors(args.store, args.model, what_if, args.servers)
        print(f"  held {mb:.2f} MB:" + " " * 11 + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
