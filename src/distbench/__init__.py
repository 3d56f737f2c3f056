"""distbench: benchmark, explain and predict distributed training of deep neural networks.

Where to start: ``cli/main.py`` maps subcommands to plain functions; ``harness/`` runs a
benchmark (``harness.session.run_benchmarks``); ``store/`` keeps the results.
"""

__version__ = "0.1.0"
