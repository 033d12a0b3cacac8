"""The model store: shipped models inside the package, and user model folders.

A model is a folder with ``config.json`` and ``model.safetensors`` (see
:mod:`icmcodec.export`). Shipped models live in ``icmcodec/zoo/models/<name>/``;
``ICM_MODEL_PATH`` (``os.pathsep``-separated folders) adds more, searched first.
Nothing is ever downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).parent / "models"


class ModelNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    config: dict

    @property
    def kind(self) -> str:
        """``codec`` (a coding model), ``tasknet`` (a task network, see icmcodec.tasks) or
        ``adapter`` (a method's per-task adapter; folders written before 0.3 say ``promptset``)."""
        kind = self.config.get("kind", "codec")
        return "adapter" if kind == "promptset" else kind

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def bytes(self) -> int:
        return self.weights.stat().st_size

    def hash(self) -> bytes:
        return _hash_of(str(self.weights), self.weights.stat().st_mtime_ns)


def model_hash(blob: bytes) -> bytes:
    """A model's identity in every ``.icm`` header: the first 16 bytes of the SHA-256
    of its weights file. (Here, not in ``export``: export imports the training code and
    compressai, which would add seconds to every model load.)"""
    return hashlib.sha256(blob).digest()[:16]


@lru_cache(maxsize=None)
def _hash_of(path: str, _mtime: int) -> bytes:
    return model_hash(Path(path).read_bytes())


def entry_at(folder: str | Path) -> ModelEntry:
    """The model in one folder (``config.json`` + ``model.safetensors``)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{folder}: no readable config.json ({e})") from None
    return ModelEntry(config.get("name", folder.name), folder, config)


def search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("ICM_MODEL_PATH", "").split(os.pathsep) if p]
    return extra + [SHIPPED]


def available() -> list[ModelEntry]:
    """Every model folder found on the search path (first one of a name wins)."""
    seen, out = set(), []
    for root in search_path():
        if not root.is_dir():
            continue
        for cfg in sorted(root.glob("*/config.json")):
            try:
                config = json.loads(cfg.read_text())
            except (OSError, ValueError):
                continue
            name = config.get("name", cfg.parent.name)
            if name in seen or not (cfg.parent / "model.safetensors").is_file():
                continue
            seen.add(name)
            out.append(ModelEntry(name, cfg.parent, config))
    return out


def find(name: str | None = None, *, task: str = "recon", model_hash: bytes | None = None,
         kind: str = "codec", method: str | None = None) -> ModelEntry:
    """A model of ``kind`` by name, by the hash stored in a file header, or the default
    for a task (of ``method``, if given: its models only)."""
    models = [m for m in available() if m.kind == kind]
    if method is not None and name is None and model_hash is None:
        models = [m for m in models if m.config.get("method") == method]
        if not models:
            raise ModelNotFoundError(f"no model of method {method} is installed (see 'icm models')")
        # the method's model for the task (a method with one model per task), else its
        # default model, whatever it codes (a feature codec's task is "features")
        pool = [m for m in models if m.config.get("task") == task] or models
        return next((m for m in pool if m.config.get("default", False)), pool[0])
    what = KIND_NAMES.get(kind, kind)
    if model_hash is not None:
        for m in models:
            if m.hash() == model_hash:
                return m
        raise not_installed(what, model_hash)
    if name is not None:
        if (Path(name) / "config.json").is_file():
            entry = entry_at(name)
            if entry.kind != kind:
                raise ModelNotFoundError(f"{name} is a {entry.kind}, not a {kind}")
            return entry
        for m in models:
            if m.name == name:
                return m
        raise ModelNotFoundError(f"no {what} named {name!r} (see 'icm models')")
    for m in models:
        if m.config.get("task") == task and m.config.get("default", False):
            return m
    for m in models:
        if m.config.get("task") == task:
            return m
    raise ModelNotFoundError(f"no {what} installed for task {task!r}")


KIND_NAMES = {"codec": "model", "tasknet": "task network", "adapter": "adapter"}


def not_installed(what: str, model_hash: bytes) -> ModelNotFoundError:
    """The error for a hash no installed model has (naming the model if icm retired it)."""
    old = retired().get(model_hash.hex())
    if old:
        return ModelNotFoundError(
            f"the file was made for {what} {old['name']} ({model_hash.hex()[:12]}), which icm "
            f"{old['retired_in']} no longer ships (its successor is {old['successor']}); decode it with an "
            f"older icm, or add that {what}'s folder to ICM_MODEL_PATH")
    return ModelNotFoundError(f"the file was made with {what} {model_hash.hex()}, which is not installed "
                              "(add its folder to ICM_MODEL_PATH)")


@dataclass(frozen=True)
class Resolved:
    """Everything a file header names, found together: the coding model, the adapter
    (if the header's ``adapter_hash`` names one) and the task network (the one the
    header names, or the one the adapter was made with)."""

    model: ModelEntry | None  # None: not asked for (the caller has the model loaded)
    adapter: ModelEntry | None = None
    tasknet: ModelEntry | None = None


def resolve(model_hash: bytes | None, adapter_hash: bytes = bytes(16), names: str = "tasknet") -> Resolved:
    """The installed models a file names, in one pass over the search path (hashes are
    cached per file and modification time). ``names``: the kind ``adapter_hash`` names
    for the file's method (``adapter``, ``tasknet``, or ``codec``: the model itself);
    ``model_hash`` None: the
    coding model is not looked up."""
    by_hash: dict[bytes, ModelEntry] = {}
    for m in available():
        by_hash.setdefault(m.hash(), m)
    model = None if model_hash is None else by_hash.get(model_hash)
    if model_hash is not None and (model is None or model.kind != "codec"):
        raise not_installed("model", model_hash)
    if adapter_hash == bytes(16):
        return Resolved(model)
    if names == "codec":  # a per-task model that names itself (see MethodSpec.header_names)
        if model_hash is not None and adapter_hash != model_hash:
            raise ModelNotFoundError("the file's adapter_hash must repeat its model_hash for its method")
        return Resolved(model)
    named = by_hash.get(adapter_hash)
    if named is None or named.kind != names:
        raise not_installed(KIND_NAMES.get(names, names), adapter_hash)
    if named.kind == "tasknet":
        return Resolved(model, tasknet=named)
    net_hash = bytes.fromhex(named.config.get("tasknet_hash") or "")
    net = by_hash.get(net_hash) if net_hash else None
    if net_hash and (net is None or net.kind != "tasknet"):
        raise ModelNotFoundError(f"adapter {named.name} runs task network {net_hash.hex()}, which is not installed "
                                 "(add its folder to ICM_MODEL_PATH)")
    return Resolved(model, named, net)


@lru_cache(maxsize=1)
def retired() -> dict[str, dict]:
    """Models that shipped once, by the hex hash files name them with (retired.json)."""
    d = json.loads((Path(__file__).parent / "retired.json").read_text())
    return {k: v for k, v in d.items() if not k.startswith("_")}


def write_model(folder: str | Path, config: dict, blob: bytes) -> bytes:
    """Write a model folder (``model.safetensors`` bytes, then ``config.json``), each file
    atomically (a temporary name, then a rename), so a reader never sees half a model;
    returns the model's hash (what a file header names it by)."""
    from icmcodec.imageio import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.safetensors", blob)
    atomic_write(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return model_hash(blob)


def load_state(entry: ModelEntry) -> tuple[dict, dict[str, np.ndarray], bytes]:
    from safetensors.numpy import load as st_load

    blob = entry.weights.read_bytes()
    return entry.config, st_load(blob), model_hash(blob)
