"""The ring all-reduce's bandwidth as the predictions take it, beside the sweep's fit.

    python benchmarks/ring_rates.py emulated.db [more.db ...]

For every profile stored in the given stores: the network it was measured behind, the
all-reduce sweep's fitted ``beta``, the bandwidth the predictions use (``ring_alpha_beta``:
behind an emulated network the sweep's largest all-reduce, less the messages' latency),
their ratio, and the point-to-point sweep's sustained rate (its largest transfer over its
time), in MB/s. Behind a shaped link the small sizes of the sweep pass above the rate
from the shaper's bucket and the fit's slope takes that up; a ratio above 1 is how much a
prediction from the fit would overstate the ring's rate.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from distbench.predict.core import ring_alpha_beta, sustained_rate
from distbench.profiling.profiles import Profile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", nargs="+")
    args = parser.parse_args()
    missing = [db for db in args.db if not Path(db).is_file()]
    if missing:
        print(f"ring_rates: no such store: {missing[0]}", file=sys.stderr)
        return 2
    print(
        f"{'store':22} {'model':12} {'network':28} {'fit':>8} {'used':>8} {'ratio':>6} {'p2p':>8}"
    )
    for db in args.db:
        con = sqlite3.connect(db)
        for (data,) in con.execute("SELECT data FROM profiles ORDER BY profile_id"):
            profile = Profile.from_dict(json.loads(data))
            _, used = ring_alpha_beta(profile)
            fit = profile.allreduce.beta
            print(
                f"{db.split('/')[-1][:22]:22} {profile.model.split(':')[-1][:12]:12}"
                f" {str(profile.network)[:28]:28} {fit / 1e6:8.2f} {used / 1e6:8.2f}"
                f" {fit / used:6.3f} {sustained_rate(profile) / 1e6:8.2f}"
            )
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
