"""Emergence analysis over models sorted by scale: where an ability appears (with an interval), how sharply,
whether smaller models predict it, whether it is a mirage of the metric, and forecasts scored on held-out scale.

Modules: `curves` (statistics of one curve), `intervals` (paired and hierarchical resampling), `points` (seed
means per model size), `verdicts` (the mirage test), `tables` (emergence and p^L tables), `comparisons`
(augmented prompting), `forecast` (forecasts scored against larger models).
"""

from emergence.analysis.comparisons import augmentation_table, select_points, write_augmentation
from emergence.analysis.curves import (
                                       breakthroughness,
                                       breakthroughness_references,
                                       curve_statistics,
                                       emergence_index,
                                       linearity,
                                       orientation,
                                       predictability_error,
                                       relative_error,
)
from emergence.analysis.forecast import forecast_table, write_forecast
from emergence.analysis.points import CHANCE_BOUNDED, METRICS, PAPER_ONLY, read_samples, scale_points
from emergence.analysis.tables import emergence_table, pl_deviation, write_emergence_tables
from emergence.analysis.verdicts import mirage_verdict

__all__ = [
    "CHANCE_BOUNDED", "METRICS", "PAPER_ONLY", "augmentation_table", "breakthroughness", "breakthroughness_references",
    "curve_statistics", "emergence_index", "emergence_table", "forecast_table", "linearity", "mirage_verdict",
    "orientation", "pl_deviation", "predictability_error", "read_samples", "relative_error", "scale_points",
    "select_points", "write_augmentation", "write_emergence_tables", "write_forecast",
]
