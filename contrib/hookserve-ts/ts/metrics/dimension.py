"""``ts.metrics.dimension.Dimension``: a metric label, as ``context.metrics.add_*`` takes it.

hookserve's handler metrics turn each ``Dimension(name, value)`` into the label ``name=value``.
"""

from __future__ import annotations


class Dimension:
    """One ``name: value`` label of a metric."""

    def __init__(self, name: str, value: str):
        self.name = name
        self.value = value

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"

    def to_dict(self) -> dict[str, str]:
        return {"Name": self.name, "Value": self.value}
