"""Running benchmarks: supervision, launchers, the rank program, aggregation, the session.

Where to start: ``session.run_benchmarks`` (one call per CLI invocation) checks what it
can, launches each run through ``launchers.launch`` (torchrun, emulated hosts or a
framework adapter, all supervised by ``processes.py``), then ``aggregate.aggregate_run``
turns the per-rank records written by ``worker.py`` into one ``RunResult`` for the store.
"""
