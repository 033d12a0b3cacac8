"""MPA's model folders: the MPA model (a binding to its base) and per-task path sets.

    python -m icmcodec.methods.mpa.export --base tic-hybrid --out MODEL_DIR --name mpa-tic-hybrid

* The MPA model: ``config.json`` (kind ``codec``, method ``mpa``, the base's name and
  hash, its ``arch`` and quality range for ``icm models``) and a weights file holding one
  tensor, ``base_hash`` (16 bytes), so that the MPA model's hash is a function of its
  base.
* A path set (:func:`write_paths`, written by ``python -m icmcodec.methods.mpa.train
  --export``): ``config.json`` (kind ``adapter``, method ``mpa``, task, the MPA model's
  hash as ``base_hash``, the task network's hash, the wrapped MLPs, the side path width,
  the recorded strength) and the paths' tensors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from icmcodec import zoo
from icmcodec.coding.export import serialize


def binding(base: zoo.ModelEntry, name: str, default: bool = False) -> tuple[dict, bytes]:
    """(config, weights bytes) of the MPA model on ``base``."""
    h = base.hash()
    config = {"kind": "codec", "method": "mpa", "name": name, "task": "recon", "format_version": 1,
              "base": base.name, "base_hash": h.hex(), "arch": base.config["arch"],
              "quality_range": base.config.get("quality_range"),
              "default_quality": base.config.get("default_quality"), "default": default}
    config = {k: v for k, v in config.items() if v is not None}
    return config, serialize({"base_hash": np.frombuffer(h, dtype=np.uint8).copy()})


def write_binding(folder: str | Path, base: zoo.ModelEntry, name: str | None = None, default: bool = False) -> bytes:
    return zoo.write_model(folder, *binding(base, name or Path(folder).name, default))


def write_paths(paths, folder: str | Path, *, name: str, task: str, mpa_hash: bytes, tasknet_hash: bytes,
                hidden: int, strength: float, default: bool = False, **extra) -> bytes:
    """Write a path set folder (``paths``: a :class:`.paths.PathSet`); returns its hash."""
    arrays = {k: v.detach().float().contiguous().cpu().numpy() for k, v in paths.state_dict().items()}
    config = {"kind": "adapter", "method": "mpa", "name": name, "task": task, "base_hash": mpa_hash.hex(),
              "tasknet_hash": tasknet_hash.hex(), "paths": list(paths.names), "hidden": int(hidden),
              "strength": float(strength), "params": int(sum(v.size for v in arrays.values())),
              "default": default, **extra}
    return zoo.write_model(folder, config, serialize(arrays))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.mpa.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the TIC model (name or folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--name")
    a = p.parse_args(argv)
    try:
        base = zoo.find(a.base)
    except zoo.ModelNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    if base.config.get("method") != "transtic":
        raise SystemExit(f"error: {a.base} is a {base.config.get('method')} model, not a TIC base")
    h = write_binding(a.out, base, a.name)
    print(f"wrote {a.out} (hash {h.hex()}) on base {base.name} ({base.hash().hex()[:12]})")


if __name__ == "__main__":
    main()
