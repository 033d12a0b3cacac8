"""The tasks an MPA file can be decoded to, without torch (``icm info`` asks too).

An MPA file is coded once, by the base's encoder, for every task: it serves its own
(header) task, the picture (``recon``: the base's main path), and every task for which a
path set made for the file's MPA model is installed, sets added after the file was made
included.
"""
from __future__ import annotations

import bitstream
from icmcodec import zoo


def installed_sets(model_hash: bytes) -> list[zoo.ModelEntry]:
    """The MPA path sets made for the MPA model ``model_hash``, default sets first."""
    found = [m for m in zoo.available() if m.kind == "adapter" and m.config.get("method") == "mpa"
             and m.config.get("base_hash") == model_hash.hex()]
    return sorted(found, key=lambda m: not m.config.get("default", False))


def served_tasks(header: bitstream.Header) -> tuple[str, ...]:
    own = header.task.name.lower()
    out = [own] + (["recon"] if own != "recon" else [])
    for m in installed_sets(header.model_hash):
        if m.config.get("task") not in out:
            out.append(m.config["task"])
    return tuple(out)
