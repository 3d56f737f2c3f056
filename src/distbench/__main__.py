"""``python -m distbench`` is the ``distbench`` command."""

from distbench.cli.main import main

raise SystemExit(main())
