"""A trained DoRA-ICM run -> a model folder (one per task):
``python -m icmcodec.methods.dora_icm.export RUN/last.pt OUT_DIR --name dora-lite0-semseg``.

The file holds what the task needs and nothing of the frozen backbone: the DoRA adapters
(``adapter.*``, float32), the preliminary decoder and h_a (``float.*``), the exact entropy
model (:func:`icmcodec.coding.export.export_context_state`) and the decoder
(``float.decoder.*``). The config names the backbone and the hash of its tensors, which the
codec checks before encoding.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from icmcodec.coding.export import FORMAT_VERSION, export_context_state, serialize
from icmcodec.methods.dora_icm import dora
from icmcodec.methods.dora_icm.codec import backbone_hash
from icmcodec.methods.dora_icm.model import DoraIcm, DoraIcmConfig
from icmcodec.zoo import model_hash, write_model


def _arrays(sd: dict, prefix: str, half: bool = False) -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().to(torch.float16 if half and v.dim() == 4 else torch.float32).contiguous().numpy()
            for k, v in sd.items() if v.is_floating_point()}


def export_state(model: DoraIcm, compact: bool = False) -> dict[str, np.ndarray]:
    model = model.eval()
    state = export_context_state(model.entropy, compact)
    state.update(_arrays(model.encoder.prelim.state_dict(), "float.prelim.", compact))
    state.update(_arrays(model.decoder.state_dict(), "float.decoder.", compact))
    state.update(_arrays(dora.adapter_state(model.encoder.backbone), "adapter."))
    return state


def make_config(name: str, cfg: DoraIcmConfig, backbone: dict, **extra) -> dict:
    return {"name": name, "method": "dora-icm", "task": cfg.task, "format_version": FORMAT_VERSION,
            "arch": cfg.to_dict(), "quality_range": [-2.0, float(cfg.levels - 1)], "backbone": backbone, **extra}


def export_model(model: DoraIcm, out_dir: Path, name: str, backbone_weights: str = "registry", compact: bool = False,
                 **extra) -> Path:
    source = {"name": model.cfg.backbone, "weights": backbone_weights, "hash": backbone_hash(model.encoder.backbone)}
    write_model(out_dir, make_config(name, model.cfg, source, **extra), serialize(export_state(model, compact)))
    return Path(out_dir)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m icmcodec.methods.dora_icm.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--default", action="store_true", help="the default dora-icm set for its task")
    p.add_argument("--compact", action="store_true", help="float16 convolution kernels (about half the file)")
    p.add_argument("--backbone-weights", default="registry",
                   help="where the codec finds the backbone the set was trained on (default: the registry package)")
    a = p.parse_args(argv)
    from icmcodec.methods.dora_icm.model import build_backbone
    from icmcodec.tasks.backbone import input_stats

    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    cfg = DoraIcmConfig.from_dict(ck["config"])
    model = DoraIcm(cfg, build_backbone(cfg, None), *input_stats(cfg.backbone))
    if any(".lora_" in k for k in ck["model"]):
        model.encoder.adapt()
    model.load_state_dict(ck["model"])
    out = export_model(model, a.out_dir, a.name, a.backbone_weights, a.compact, default=a.default,
                       train_step=ck.get("step"))
    blob = (out / "model.safetensors").read_bytes()
    print(f"wrote {out} ({len(blob)} bytes, hash {model_hash(blob).hex()})")


if __name__ == "__main__":
    main()
