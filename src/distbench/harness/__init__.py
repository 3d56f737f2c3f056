"""Running and measuring benchmarks.

Where to start: ``session.run_benchmarks`` (one call per CLI invocation) validates, launches
each run through ``launcher.launch`` (torchrun), then ``aggregate.aggregate_run`` turns the
per-rank records written by ``worker.py`` into one result for the store.
"""
