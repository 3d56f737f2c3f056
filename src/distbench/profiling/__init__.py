"""Profiling: measurement primitives everything calls down into (``primitives.py``), the
calibration profile built from them (``calibrate.py``, data model in ``profiles.py``), DDP's
and the parameter server's own costs (``ddp_costs.py``, ``ps_transfer.py``), and operator
profiles (``operators.py``, common names across frameworks in ``opnames.py``)."""
