"""Export Prompt-ICM's base (feature codec + extractor) and its per-task adapters.

* The base: ``python -m icmcodec.methods.prompt_icm.export RUN/last.pt OUT_DIR --name NAME``.
  The file is the hyperprior's (:mod:`icmcodec.coding.export`: float
  transforms, exact h_s, zero gains, tables) plus ``extractor.*``, the frozen backbone
  segments that make the coded feature and the selector's inputs. Its hash is the
  ``model_hash`` of every Prompt-ICM file, so a file is decoded by the very extractor
  and codec it was made with.
* An adapter (:func:`write_adapter`): ``config.json`` (kind ``adapter``, method
  ``prompt-icm``, task, base hash, task network hash) and ``model.safetensors`` with
  ``selector.*`` and ``decoder.*`` (prompts and head). Its hash is the file's
  ``adapter_hash``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from icmcodec.coding import export as hp
from icmcodec.methods.prompt_icm.model import PromptIcmConfig, load_extractor, make_feature_codec


def extractor_state(extractor) -> dict[str, np.ndarray]:
    """The extractor segments a base runs (everything its ``Staged`` holds)."""
    return {"extractor." + k: v.detach().float().contiguous().numpy() for k, v in extractor.state_dict().items()}


def export_state(model, extractor, compact: bool = False) -> dict[str, np.ndarray]:
    return {**hp.export_state(model, compact), **extractor_state(extractor)}


def trainable_from_state(config: dict, state: dict[str, np.ndarray]):
    """A trainable feature codec from a shipped base (the extractor is loaded separately,
    by :func:`extractor_from_state`)."""
    cfg = PromptIcmConfig.from_dict(config["arch"])
    return hp.trainable_from_state(config, {k: v for k, v in state.items() if not k.startswith("extractor.")},
                                   make_feature_codec(cfg))


def extractor_from_state(config: dict, state: dict[str, np.ndarray]):
    from icmcodec.methods.prompt_icm.model import build_extractor

    ex = build_extractor(PromptIcmConfig.from_dict(config["arch"]))
    load_extractor(ex, {k[len("extractor."):]: torch.from_numpy(np.array(v)) for k, v in state.items()
                        if k.startswith("extractor.")})
    return ex.eval()


def export_checkpoint(ckpt_path: Path, out_dir: Path, name: str, compact: bool = False, **extra) -> bytes:
    from icmcodec.methods.prompt_icm.model import build_extractor
    from icmcodec.zoo import write_model

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = PromptIcmConfig.from_dict(ck["config"])
    model = make_feature_codec(cfg)
    model.load_state_dict(ck["model"])
    ex = build_extractor(cfg)
    load_extractor(ex, ck["extractor"])
    blob = hp.serialize(export_state(model, ex, compact))
    config = hp.make_config(name, cfg, "prompt-icm", train_step=ck.get("step"), **extra)
    config["quality_range"] = [-4.0, 4.0]  # see codec.steer; a set's trained_qualities says where it trained
    config["default_quality"] = 1.0
    config["task"] = "features"  # a backbone's features for every machine task, no picture
    return write_model(out_dir, config, blob)


def write_adapter(selector, decoder, folder: Path, *, name: str, task: str, base_hash: bytes,
                     tasknet_hash: bytes, default: bool = False, **extra) -> bytes:
    """Write a task's adapter folder; returns its content hash (the ``adapter_hash``)."""
    from icmcodec.zoo import write_model

    arrays = {} if extra.get("uniform") else {"selector." + k: v.detach().float().contiguous().numpy()
                                               for k, v in selector.state_dict().items()}
    arrays.update({"decoder." + k: v.detach().float().contiguous().numpy() for k, v in decoder.adapter_state().items()})
    blob = hp.serialize(arrays)
    config = {"kind": "adapter", "method": "prompt-icm", "name": name, "task": task, "base_hash": base_hash.hex(),
              "tasknet_hash": tasknet_hash.hex(), "prompts": decoder.use_prompts,
              "params": int(sum(v.size for v in arrays.values())), "default": default, **extra}
    return write_model(folder, config, blob)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.prompt_icm.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--compact", action="store_true", help="float16 transform kernels, int16 exact weights")
    p.add_argument("--default", action="store_true", help="the default base of --method prompt-icm")
    a = p.parse_args(argv)
    h = export_checkpoint(a.checkpoint, a.out_dir, a.name, a.compact, default=a.default)
    print(f"wrote {a.out_dir} (hash {h.hex()})")


if __name__ == "__main__":
    main()
