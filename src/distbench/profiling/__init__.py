"""Profiling: operator profiles (``operators.py``); communication micro-benchmarks and the
calibration of t_grad / t_comm belong here too."""
