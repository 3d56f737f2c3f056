"""Command-line interface: one module per subcommand, parsing only (see ``main.py``)."""
