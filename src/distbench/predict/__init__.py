"""Predict training time and speedup from a one-worker profile, before renting a cluster.

Where to start: ``formulas`` holds the pure analytic formulas (no torch); ``core`` predicts
one configuration's step from a calibration profile and holds the compositions of the
formulas both commands use; ``estimate`` builds per-worker-count tables and a
recommendation; ``accuracy`` compares prediction with measurement.
"""

from distbench.predict.estimate import (
    EstimateInputs,
    EstimateReport,
    EstimateRow,
    Recommendation,
    SemaphoreBounds,
    estimate_report,
    estimate_table,
    recommend,
    semaphore_bounds,
)

__all__ = [
    "EstimateInputs",
    "EstimateReport",
    "EstimateRow",
    "Recommendation",
    "SemaphoreBounds",
    "estimate_report",
    "estimate_table",
    "recommend",
    "semaphore_bounds",
]
