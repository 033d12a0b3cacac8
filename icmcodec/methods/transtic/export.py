"""Export TIC (the base) and TransTIC prompt sets to the shipped format.

* The base: ``python -m icmcodec.export RUN/last.pt OUT_DIR --name NAME`` for a
  transtic checkpoint. The file is the hyperprior's (:mod:`icmcodec.coding.export`):
  the Swin blocks are float transform weights like the convolutions (``float.g_a.*``,
  ``float.g_s.*``); h_s, gains and tables are stored the same way.
* A prompt set (:func:`write_adapter`): ``config.json`` (kind ``adapter``,
  method, task, the base's hash, the task network's hash, which sides it prompts)
  and ``model.safetensors`` with ``generator.*`` and ``task_prompts.*``. Its content
  hash is what a file's header names in ``adapter_hash``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icmcodec.coding import export as hp
from icmcodec.methods.transtic.model import TIC, TransTIC, TransticConfig


def export_state(model: TIC, compact: bool = False) -> dict[str, np.ndarray]:
    return hp.export_state(model, compact)


def trainable_from_state(config: dict, state: dict[str, np.ndarray]) -> TIC:
    return hp.trainable_from_state(config, state, TIC(TransticConfig.from_dict(config["arch"])))


def adapter_arrays(ps: TransTIC) -> dict[str, np.ndarray]:
    return {k: v.detach().float().contiguous().numpy() for k, v in ps.state_dict().items()}


def write_adapter(ps: TransTIC, folder: Path, *, name: str, task: str, base_hash: bytes, tasknet_hash: bytes,
                     encoder: bool = True, decoder: bool = True, default: bool = False, **extra) -> bytes:
    """Write a prompt set (the method's adapter) folder; returns its content hash (the ``adapter_hash``)."""
    from icmcodec.zoo import write_model

    arrays = adapter_arrays(ps)
    if not encoder:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("generator.")}
    if not decoder:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("task_prompts.")}
    blob = hp.serialize(arrays)
    config = {"kind": "adapter", "method": "transtic", "name": name, "task": task, "base_hash": base_hash.hex(),
              "tasknet_hash": tasknet_hash.hex(), "encoder": encoder, "decoder": decoder,
              "params": int(sum(v.size for v in arrays.values())), "default": default, **extra}
    return write_model(folder, config, blob)


def main(argv=None) -> None:
    hp.main(argv, method="transtic", model_cls=TIC, config_cls=TransticConfig, export=export_state)


if __name__ == "__main__":
    main()
