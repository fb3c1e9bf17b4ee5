"""What every ``python -m bevlib.bench`` case shares: the JSON schema version, medians in ms, the load average."""
from __future__ import annotations

import os
import statistics

#: Version of the benchmark JSON layout (every case writes it).
SCHEMA_VERSION = 1


def _median_ms(samples: list[float]) -> float:
    return round(1e3 * statistics.median(samples), 3)


def _load():
    """The 1-minute load average (None where the platform has none), recorded beside timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None
