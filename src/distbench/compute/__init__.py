"""How a worker spends its compute: real (the model's forward, backward and update), or
emulated from a profile (``--compute profile`` or ``--compute SECONDS``).

Where to start: ``plan.py`` (pure, no torch) parses ``--compute`` and turns a stored
profile or a number of seconds into a ``ComputePlan``: per-step draws of each phase and
when each parameter's gradient becomes ready; ``wait.py`` (stdlib) waits for a given time
at no CPU cost and keeps the error; ``emulated.py`` (torch) is what a strategy calls —
``RealCompute`` or ``EmulatedCompute``, one interface. docs/emulation.md says what an
emulated run checks and what it does not.
"""
