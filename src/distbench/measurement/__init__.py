"""The measurement contracts at the bottom of distbench: the phase timer (``timer``), the
per-rank record lines every worker writes (``records``) and the statistics over them
(``stats``). ``timer`` and ``records`` use the standard library only, so the framework
adapters' in-venv workers load them by file path; nothing here imports another layer."""
