"""MPA at coding time: the base TIC's chunks, decoded through a task's paths.

An MPA model (``mpa-tic-hybrid``) is a binding, not a network: its ``config.json`` names
the base TIC model and its weights file holds one tensor, the base's hash, so the MPA
model's own hash (what a file's ``model_hash`` says) stands for "MPA on that base". The
codec loads the base from the model store and codes exactly as the base: the encoder is
the base's, untouched, so an MPA file is coded once for every task and its rate comes
from the quality alone.

The adapters are path sets (:mod:`.paths`), one folder per task, each naming the MPA
model it was made for (``base_hash``) and the task network it was trained with.
Decoding binds the set of the asked task and its strength rho (:meth:`MpaCodec.for_task`):
g_s runs as a copy whose Swin MLPs are wrapped (:func:`.paths.with_paths`, weights
shared); at rho = 0, and for ``recon``, g_s is the base's own, so the picture is the
base's byte for byte.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

import bitstream
from icmcodec import zoo
from icmcodec.coding.tic import TicCodec
from icmcodec.exact import ACT_FRAC
from icmcodec.methods.base import AdapterBinding, Codec, Encoded
from icmcodec.methods.mpa.paths import PathSet, mlp_names, with_paths
from icmcodec.methods.mpa.serves import served_tasks


class BaseMissing(zoo.ModelNotFoundError):
    pass


def base_of(config: dict, state: dict[str, np.ndarray]) -> zoo.ModelEntry:
    """The installed base TIC model an MPA model names (by its hash)."""
    h = bytes(np.asarray(state["base_hash"], dtype=np.uint8))
    if h.hex() != config.get("base_hash"):
        raise ValueError("MPA model: the base hash in its weights and its config disagree")
    try:
        entry = zoo.find(model_hash=h)
    except zoo.ModelNotFoundError:
        raise BaseMissing(f"MPA model {config.get('name')} runs on base {config.get('base', '?')} ({h.hex()[:12]}), "
                          "which is not installed (add its folder to ICM_MODEL_PATH)") from None
    if entry.config.get("method") != "transtic" or entry.config.get("task", "recon") != "recon":
        raise ValueError(f"MPA model {config.get('name')}: its base {entry.name} is not a TIC model")
    return entry


class MpaPaths:
    """A task's path set, loaded: the paths, the strength it was trained for, identity."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, names: list[str],
                 dim: int, device):
        self.config, self.hash = config, model_hash
        self.task = config["task"]
        self.tasknet_hash = bytes.fromhex(config["tasknet_hash"]) if config.get("tasknet_hash") else None
        self.strength = float(config.get("strength", 0.5))
        if list(config.get("paths", [])) != names:
            raise ValueError(f"path set {config.get('name')} wraps {config.get('paths')}, the base has {names}")
        self.paths = PathSet(names, dim, int(config["hidden"]))
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
        try:
            self.paths.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise ValueError(f"path set does not fit its base: {' '.join(str(e).split())[:300]}") from None
        self.paths.eval().requires_grad_(False).to(device)
        self._g_s: dict[float, torch.nn.Module] = {}

    def g_s(self, base_g_s, rho: float):
        if rho not in self._g_s:
            self._g_s[rho] = with_paths(base_g_s, self.paths, rho).eval()
        return self._g_s[rho]


class MpaCodec(AdapterBinding, TicCodec, Codec):
    method = "mpa"
    produces = "picture"
    encoded = Encoded
    strength: float | None = None  # rho of the bound path set (None: the set's own)
    adapters_serve_tasks = True

    def __init__(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, device="cpu"):
        base = base_of(config, state)
        bconfig, bstate, bhash = zoo.load_state(base)
        super().__init__(bconfig, bstate, model_hash, device)
        self.config = {**bconfig, **config}
        self.base_hash = bhash
        self.names = mlp_names(self.g_s)

    def load_adapter(self, config: dict, state: dict[str, np.ndarray], model_hash: bytes, tasknet=None) -> MpaPaths:
        self.check_base(config)
        return MpaPaths(config, state, model_hash, self.names, self.arch.N, self.device)

    def decodable_tasks(self, header: bitstream.Header) -> tuple[str, ...]:
        return served_tasks(header)

    def for_task(self, task: str, strength: float | None = None) -> "MpaCodec":
        """This codec set up for one output: ``recon`` the base (no paths); a machine task
        its bound path set at ``strength`` (default: the set's recorded strength)."""
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise ValueError(f"--strength {strength:g}: must be between 0 and 1")
        out = copy.copy(self)
        if task == "recon":
            if strength is not None:
                raise ValueError("--strength is for machine tasks (recon is the base's picture)")
            out.adapter = None
        out.strength = strength
        return out

    def y_hat(self, z_bytes: bytes, y_bytes: bytes, coded_size, quality: float) -> np.ndarray:
        """The latents g_s receives for a file's chunks (M x h x w float32), as decoding
        computes them: what path sets train on and benchmarks feed g_s."""
        dec = self.decode_symbols(z_bytes, y_bytes, coded_size, quality)[1:]
        y_sym, mean_fp, lg = self.hyperprior.y.reconstruction(dec)
        gain = np.exp2(lg / (1 << ACT_FRAC))[:, None, None]
        return ((y_sym + mean_fp / (1 << ACT_FRAC)) / gain).astype(np.float32)

    @property
    def rho(self) -> float:
        if self.adapter is None:
            return 0.0
        return self.adapter.strength if self.strength is None else self.strength

    def _synthesis_layers(self):
        if self.rho <= 0:
            return list(self.g_s)
        return list(self.adapter.g_s(self.g_s, self.rho))
