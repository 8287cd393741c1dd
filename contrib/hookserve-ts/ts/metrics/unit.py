"""``ts.metrics.unit.Units``: TorchServe's table of metric unit names."""

from __future__ import annotations


class Units:
    """Unit abbreviation -> its name."""

    def __init__(self) -> None:
        self.units = {
            "ms": "Milliseconds",
            "s": "Seconds",
            "percent": "Percent",
            "count": "Count",
            "MB": "Megabytes",
            "GB": "Gigabytes",
            "kB": "Kilobytes",
            "B": "Bytes",
            "": "unit",
            None: "unit",
        }
