"""A tiny, seeded TransTIC for tests: the tiny hyperprior as a hybrid TIC, and a seeded
prompt set (the method's adapter) for it."""
from __future__ import annotations

from pathlib import Path

import torch

from icmcodec.coding.export import make_config, serialize
from icmcodec.coding.tiny import TINY, TINY_TIC, seed_blocks, tiny_float_model
from icmcodec.zoo import write_model

TINY_TRANSTIC = TINY_TIC


def tiny_transtic_model(seed: int = 0, active: bool = True):
    """The tiny hyperprior of ``seed`` as a hybrid TIC. ``active``: the Swin blocks'
    zero projections get seeded weights (as after training), so blocks and prompts act;
    otherwise it is the tiny hyperprior exactly."""
    from icmcodec.methods.transtic.model import TransticConfig, from_hyperprior

    cfg = TransticConfig(**{**TINY.to_dict(), "lambdas": TINY.lambdas, **TINY_TRANSTIC})
    tic = from_hyperprior(tiny_float_model(seed), cfg)
    seed_blocks([b for _, b in tic.g_a.blocks() + tic.g_s.blocks()], seed, active)
    return tic.eval()


def tiny_transtic_bytes(seed: int = 0, active: bool = True) -> tuple[dict, bytes]:
    from icmcodec.methods.transtic.export import export_state as tt_export

    model = tiny_transtic_model(seed, active)
    name = f"test-tiny-transtic-{seed}" + ("" if active else "-identity")
    return make_config(name, model.cfg, "transtic", default=False), serialize(tt_export(model))


def write_tiny_transtic_model(folder: str | Path, seed: int = 0, active: bool = True) -> Path:
    write_model(folder, *tiny_transtic_bytes(seed, active))
    return Path(folder)


def write_tiny_transtic_adapter(folder: str | Path, base_folder: str | Path, tasknet_folder: str | Path, task: str,
                          seed: int = 0, encoder: bool = True, decoder: bool = True) -> bytes:
    """A seeded (untrained) TransTIC prompt set for the tiny TIC in ``base_folder`` and
    the task network in ``tasknet_folder``; returns its hash."""
    from icmcodec.methods.transtic.export import trainable_from_state, write_adapter
    from icmcodec.methods.transtic.model import TransTIC
    from icmcodec.zoo import entry_at, load_state

    config, state, base_hash = load_state(entry_at(base_folder))
    tic = trainable_from_state(config, state)
    with torch.random.fork_rng():  # seeded, without moving the caller's RNG
        torch.manual_seed(seed + 3000)
        ps = TransTIC(tic.cfg, tic)
    return write_adapter(ps, Path(folder), name=Path(folder).name, task=task, base_hash=base_hash,
                            tasknet_hash=entry_at(tasknet_folder).hash(), encoder=encoder, decoder=decoder)
