"""Export a trained hyperprior-family network to the shipped format (shared by every method
whose file is the hyperprior's plus its own tensors: context, TIC, Prompt-ICM, ...).

``python -m icmcodec.export RUN/last.pt OUT_DIR --name NAME`` (for a hyperprior checkpoint) writes
``OUT_DIR/config.json`` and ``OUT_DIR/model.safetensors``. The safetensors file holds

* ``float.*``: g_a, g_s, h_a weights (float32) - run in float, on any device;
* ``exact.h_s.*``: integer weights/biases of the hyper synthesis (:mod:`icmcodec.exact`);
* ``exact.z_median_fp``, ``exact.log2_gain_fp``, ``exact.pow2``: integer medians of z,
  per-level log2 gains and the 2**(f/1024) table, all fixed-point;
* ``tables.z.*`` (one table per z channel) and ``tables.y.*`` (one per scale index):
  the baked integer count tables the range coder uses.

The base-model hash in every ``.icm`` header is the first 16 bytes of the SHA-256 of
this file, so a decoder refuses a file made by any other model.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save as st_save

from icmcodec.entropy import counts_from_pmf, gaussian_tables, stack_tables
from icmcodec.exact import ACT_FRAC, EXTRAPOLATE_LEVELS, W_FRAC, pow2_table, scale_table
from icmcodec.coding.context_config import ContextConfig
from icmcodec.coding.context_net import GainedContext
from icmcodec.coding.hyperprior import quantize_hyper_synthesis
from icmcodec.coding.hyperprior_net import GainedHyperprior
from icmcodec.coding.slices import dequantize_into, quantize_context
from icmcodec.layers.transforms import HyperpriorConfig
from icmcodec.zoo import model_hash, write_model  # noqa: F401  (re-exported: export.model_hash)

FORMAT_VERSION = 1


@torch.no_grad()
def z_tables(eb, tail: float = 1e-9, search: int = 4096, margin: bool = False):
    """Per-channel factorized-prior tables of z around each channel's trained median.

    The median stays the one the model was trained and validated with; the table's
    range is found from the learned CDF itself (mass below ``tail/2`` on each side is
    left to the escape entry), so it does not depend on how far the auxiliary
    quantile loss has converged.

    The prior is evaluated in float64 (on a double copy of the trained float32
    parameters): its tables have 2**24 counts, below float32's resolution, and in
    float32 the vector unit's rounding moved counts by up to 4 between CPUs (issue 9).
    With ``margin=True`` it also returns the smallest distance, in counts, of any float
    that decides a table from a value where the table would change
    (:func:`icmcodec.entropy.tables.count_margin`, and the tail cut-offs); tests check
    that it dwarfs float64 noise, which makes the tables the same on every CPU.
    """
    from icmcodec.entropy.tables import TABLE_TOTAL, count_margin

    med = eb.quantiles[:, 0, 1].double()
    med_fp = torch.round(med * (1 << ACT_FRAC)).long().numpy()
    grid = torch.arange(-search, search + 1, dtype=torch.float64)
    centre = torch.from_numpy(med_fp).double() / (1 << ACT_FRAC)
    x = (centre[:, None] + grid[None])[:, None, :]
    eb64 = copy.deepcopy(eb).double()
    pmf, lower, upper = eb64._likelihood(x, stop_gradient=True)
    cdf_lo = torch.sigmoid(lower[:, 0])  # mass below each value's bin
    cdf_hi = torch.sigmoid(-upper[:, 0])  # mass above each value's bin
    rows, offsets, worst = [], [], float("inf")
    for c in range(eb.channels):
        keep = (cdf_lo[c] >= tail / 2).nonzero()
        a = int(keep[0]) - 1 if keep.numel() else search
        keep = (cdf_hi[c] >= tail / 2).nonzero()
        b = int(keep[-1]) + 1 if keep.numel() else search
        a, b = max(0, min(a, search - 1)), min(2 * search, max(b, search + 1))
        p = pmf[c, 0, a : b + 1].numpy()
        esc = float(cdf_lo[c, a] + cdf_hi[c, b])
        rows.append(counts_from_pmf(p, max(esc, tail)))
        offsets.append(a - search)
        if margin:
            cut = torch.cat([cdf_lo[c, max(0, a):a + 2], cdf_hi[c, b - 1:b + 1]])
            worst = min(worst, count_margin(p, max(esc, tail)),
                        float((cut - tail / 2).abs().min()) * TABLE_TOTAL)
    return (rows, offsets, med_fp, worst) if margin else (rows, offsets, med_fp)


def export_state(model: GainedHyperprior, compact: bool = False) -> dict[str, np.ndarray]:
    """Trained float model -> the flat dict of arrays that is the shipped model.

    ``compact`` makes the file smaller in two ways:
    - It stores the convolution kernels of g_a, g_s and h_a in half precision. They are
      cast back to float32 on loading. Biases and the GDN parameters stay float32,
      because the effective GDN gammas reach values far below float16's normal range.
    - It stores the exact h_s weights as int16 wherever they fit. They are the same
      integers, so the decoded symbols do not change.
    Nothing in the exact path changes value, so symbols never depend on this option.
    """
    model = model.eval()
    state: dict[str, np.ndarray] = {}
    for k, v in model.state_dict().items():
        if k.startswith(("g_a.", "g_s.", "h_a.")) and "_reparam" not in k:
            kernel = compact and k.endswith(".weight") and v.ndim == 4
            state["float." + k] = v.detach().to(torch.float16 if kernel else torch.float32).contiguous().numpy()
    # GDN: store the effective (re-parametrised) beta and gamma that FixedGDN uses
    for name, mod in model.named_modules():
        if hasattr(mod, "beta_reparam"):
            state[f"float.{name}.beta"] = mod.beta_reparam(mod.beta).detach().float().contiguous().numpy()
            state[f"float.{name}.gamma"] = mod.gamma_reparam(mod.gamma).detach().float().contiguous().numpy()
    for k, v in quantize_hyper_synthesis(model.h_s).items():
        # weights fit in int32 (|w| <= W_LIMIT); biases need int64
        if k.endswith("weight"):
            small = compact and np.abs(v).max() <= np.iinfo(np.int16).max
            v = v.astype(np.int16 if small else np.int32)
        state["exact.h_s." + k] = v
    rows, offsets, med_fp = z_tables(model.entropy_bottleneck)
    zt = stack_tables(rows, offsets)
    yt = gaussian_tables(scale_table())
    state["exact.z_median_fp"] = med_fp.astype(np.int64)
    lg = np.round(model.log2_gain.detach().double().numpy() * (1 << ACT_FRAC)).astype(np.int64)
    state["exact.log2_gain_fp"] = lg
    state["exact.pow2"] = pow2_table()
    for name, t in (("z", zt), ("y", yt)):
        state[f"tables.{name}.counts"] = t.counts
        state[f"tables.{name}.offsets"] = t.offsets
        state[f"tables.{name}.lengths"] = t.lengths
    # The factorized prior's own parameters (a few thousand numbers) are not needed for
    # coding, but with them the shipped file is a complete warm start for training.
    for k, v in model.entropy_bottleneck.state_dict().items():
        if v.numel() and not k.startswith("_"):
            state["train.entropy_bottleneck." + k] = v.detach().float().contiguous().numpy()
    return state


def trainable_from_state(config: dict, state: dict[str, np.ndarray], model: GainedHyperprior | None = None
                         ) -> GainedHyperprior:
    """Inverse of :func:`export_state`: a trainable network from a shipped model.

    Transform weights are copied, GDN parameters mapped back through compressai's
    re-parametrisation, the exact h_s de-quantized (2**-14 steps) and the log2 gains
    read back; so training can continue from any shipped model. ``model``: fill this
    network (a method built on the hyperprior) instead of a new ``GainedHyperprior``;
    its other tensors keep their values."""
    if model is None:
        model = GainedHyperprior(HyperpriorConfig.from_dict(config["arch"]))
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k.startswith("float."):
                name = k[len("float.") :]
                mod_name, _, leaf = name.rpartition(".")
                mod = model.get_submodule(mod_name)
                if hasattr(mod, "beta_reparam") and leaf in ("beta", "gamma"):
                    reparam = mod.beta_reparam if leaf == "beta" else mod.gamma_reparam
                    sd[name] = reparam.init(torch.from_numpy(np.array(v)))
                else:
                    sd[name] = torch.from_numpy(np.array(v))
            elif k.startswith("exact.h_s."):
                i, leaf = k[len("exact.h_s.") :].split(".")
                frac = W_FRAC if leaf == "weight" else W_FRAC + ACT_FRAC
                sd[f"h_s.convs.{i}.{leaf}"] = torch.from_numpy(np.array(v, dtype=np.float64) / (1 << frac)).float()
            elif k.startswith("train."):
                sd[k[len("train.") :]] = torch.from_numpy(np.array(v))
        lg_fp = np.array(state["exact.log2_gain_fp"], dtype=np.float64)
        sd["log2_gain"] = torch.from_numpy(lg_fp / (1 << ACT_FRAC)).float()
    model.load_state_dict(sd)
    return model


def serialize(state: dict[str, np.ndarray]) -> bytes:
    return st_save({k: np.ascontiguousarray(v) for k, v in state.items()}, metadata={"format": str(FORMAT_VERSION)})


def make_config(name: str, arch: HyperpriorConfig, method: str = "hyperprior", **extra) -> dict:
    return {
        "name": name,
        "method": method,
        "task": "recon",
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "quality_range": [0.0, float(arch.levels - 1)],
        **extra,
    }


def export_checkpoint(ckpt_path: Path, out_dir: Path, name: str, compact: bool = False, *, method: str = "hyperprior",
                      model_cls=GainedHyperprior, config_cls=HyperpriorConfig, export=None, **extra) -> Path:
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    arch = config_cls.from_dict(ck["config"])
    lo, hi = extra.get("quality_range", (0.0, arch.levels - 1))
    if lo < -EXTRAPOLATE_LEVELS or hi > arch.levels - 1:
        raise SystemExit(f"error: quality range {lo:g}..{hi:g}: this model codes {-EXTRAPOLATE_LEVELS}.."
                         f"{arch.levels - 1} (its top trained level; below 0 by extrapolation)")
    model = model_cls(arch)
    model.load_state_dict(ck["model"])
    blob = serialize((export or export_state)(model, compact))
    cfg = make_config(name, arch, method, train_step=ck.get("step"), **extra)
    write_model(out_dir, cfg, blob)
    return out_dir


def export_context_state(model: GainedContext, compact: bool = False) -> dict[str, np.ndarray]:
    """The hyperprior's tensors plus the context and parameter networks as integer
    weights (``exact.ctx.*``, :func:`icmcodec.coding.slices.quantize_context`)."""
    state = export_state(model, compact)
    for k, v in quantize_context(model.ctx).items():
        small = compact and k.endswith("weight") and np.abs(v).max() <= np.iinfo(np.int16).max
        state["exact.ctx." + k] = v.astype(np.int16 if small else np.int32) if k.endswith("weight") else v
    return state


def context_from_state(config: dict, state: dict[str, np.ndarray]) -> GainedContext:
    """A shipped context-family state as a trainable :class:`GainedContext`."""
    model = GainedContext(ContextConfig.from_dict(config["arch"]))
    trainable_from_state(config, state, model)
    dequantize_into(model.ctx, {k[len("exact.ctx."):]: v for k, v in state.items() if k.startswith("exact.ctx.")})
    return model


def main(argv=None, **method_kw) -> None:
    """The exporter's command line; ``method_kw`` (method, model_cls, config_cls,
    export) lets a method whose file is the hyperprior's (plus its tensors) reuse it."""
    p = argparse.ArgumentParser(prog="python -m icmcodec.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--default", action="store_true", help="mark as the default model for its task")
    p.add_argument("--default-quality", type=float, default=None, help="quality used when --quality is not given")
    p.add_argument("--compact", action="store_true",
                   help="float16 transform kernels and int16 exact weights where they fit (about half the file)")
    p.add_argument("--quality-range", metavar="LO,HI",
                   help="the real-valued --quality range users may ask for (default 0..levels-1; below level 0 "
                        "the gains continue the line through levels 0 and 1, as hp-base's and tic-hybrid's -3..4)")
    a = p.parse_args(argv)
    extra = {"default": a.default}
    if a.quality_range:
        try:
            lo, hi = (float(v) for v in a.quality_range.split(","))
        except ValueError:
            p.error(f"--quality-range {a.quality_range}: expected two numbers, LO,HI")
        if not lo < hi:
            p.error(f"--quality-range {a.quality_range}: LO must be below HI")
        extra["quality_range"] = [lo, hi]
    if a.default_quality is not None:
        extra["default_quality"] = a.default_quality
    out = export_checkpoint(a.checkpoint, a.out_dir, a.name, compact=a.compact, **method_kw, **extra)
    blob = (out / "model.safetensors").read_bytes()
    print(f"wrote {out} ({len(blob)} bytes, hash {model_hash(blob).hex()})")


if __name__ == "__main__":
    main()
