"""The context model's configuration, apart from the training model so that the codec
reads it without importing the hyperprior's training side (and compressai)."""
from __future__ import annotations

from dataclasses import dataclass

from icmcodec.layers.transforms import HyperpriorConfig


@dataclass(frozen=True)
class ContextConfig(HyperpriorConfig):
    slices: tuple = (16, 16, 32, 64, 64)  # channel slices, must sum to M
    hidden: int = 64  # width of the context and parameter networks

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["slices"] = list(self.slices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ContextConfig":
        d = dict(d)
        if "slices" in d:
            d["slices"] = tuple(d["slices"])
        return super().from_dict(d)

    def slice_bounds(self) -> list[tuple[int, int]]:
        if sum(self.slices) != self.M:
            raise ValueError(f"slices {self.slices} do not add up to M={self.M}")
        edges = [0]
        for s in self.slices:
            edges.append(edges[-1] + s)
        return list(zip(edges, edges[1:]))
