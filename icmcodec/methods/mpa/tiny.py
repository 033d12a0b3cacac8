"""A tiny, seeded MPA for tests: a tiny TIC base beside the MPA model that names it, and
a seeded path set (every weight drawn, so paths and predictor act)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icmcodec import zoo
from icmcodec.coding.export import serialize
from icmcodec.coding.tiny import tiny_tic_state
from icmcodec.methods.mpa.export import write_binding, write_paths
from icmcodec.methods.mpa.paths import PathSet, mlp_names

TINY_HIDDEN = 4


def write_tiny_mpa_model(folder: str | Path, seed: int = 0) -> Path:
    """The MPA model in ``folder`` and its tiny TIC base in ``<folder>-base`` beside it
    (the same search-path root, where the binding finds it by hash)."""
    folder = Path(folder)
    config, state = tiny_tic_state(seed)
    base_dir = folder.parent / f"{folder.name}-base"
    zoo.write_model(base_dir, {**config, "name": f"{folder.name}-base"}, serialize(state))
    write_binding(folder, zoo.entry_at(base_dir), folder.name, default=False)
    return folder


def write_tiny_mpa_adapter(folder: str | Path, base_folder: str | Path, tasknet_folder: str | Path, task: str,
                           seed: int = 0, strength: float = 0.5) -> bytes:
    """A seeded path set for the tiny MPA model in ``base_folder``; returns its hash."""
    from icmcodec.layers.tic import TicConfig, build_tic_transforms
    from icmcodec.layers.transforms import FixedGDN

    entry = zoo.entry_at(base_folder)  # the MPA model: its config carries the base's arch
    arch = TicConfig.from_dict(entry.config["arch"])
    _, g_s = build_tic_transforms(arch, gdn=lambda c, inverse: FixedGDN(c, inverse))
    paths = PathSet(mlp_names(g_s), arch.N, TINY_HIDDEN)
    rng = np.random.default_rng([seed + 4000, *task.encode()])  # sets of two tasks differ (identity = weights)
    with torch.no_grad():
        for _, p in paths.named_parameters():
            p.copy_(torch.from_numpy(rng.normal(0, 0.5, p.shape)))
    return write_paths(paths, folder, name=Path(folder).name, task=task, mpa_hash=entry.hash(),
                       tasknet_hash=zoo.entry_at(tasknet_folder).hash(), hidden=TINY_HIDDEN, strength=strength)
