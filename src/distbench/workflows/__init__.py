"""Orchestration that runs benchmarks and predictions together (``validate``)."""
