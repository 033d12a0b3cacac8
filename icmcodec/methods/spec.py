"""What a method package says about itself: :class:`MethodSpec`.

Every method is one package, ``icmcodec/methods/<name>/``, whose ``__init__.py`` (torch-
free, so listing methods is instant) defines ``SPEC = MethodSpec(...)``: its name, its
bitstream method id, the tasks it codes, what its decoder produces, whether its
machine-task files name a per-task adapter, and its code as lazy ``"module:attr"``
references. :mod:`icmcodec.registry` collects the specs; nothing else lists methods.

The code references a method declares (relative ``".codec:X"`` is inside its package):

| key | what | needed |
|---|---|---|
| ``codec`` | coding-time codec class, built as ``Codec(config, state, model_hash, device)`` | yes |
| ``export`` | ``main(argv)``: a training checkpoint -> a model folder | to ship models |
| ``trainable`` | ``(config, state) -> nn.Module``: a shipped model as a trainable one | to fine-tune |
| ``train`` | the training entry's module (``python -m``) | to train |
| ``model`` / ``config`` | the trainable network's and its config's classes | generic trainer |
| ``tiny`` | ``write(folder, seed=0) -> Path``: a tiny seeded model folder (tests) | yes |
| ``tiny_adapter`` | ``write(folder, base_folder, tasknet_folder, task) -> Path`` | with adapters |
| ``serves`` | ``(header) -> tuple[str, ...]``: the tasks a file can give, torch-free | when not the default rule |
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from bitstream import MethodId, TaskTag

PRODUCES = ("picture", "features", "task")


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the one spelling: CLI, manifests, ``icm info``, messages
    method_id: MethodId
    tasks: tuple[TaskTag, ...]  # the tasks it codes (``icm encode --task``)
    summary: str
    package: str  # the package's module name (``__name__`` of its ``__init__``)
    # what the decoder produces: "picture" (a task network runs on it for a machine
    # task), "features" (the adapter's head finishes the task) or "task" (the output)
    produces: str = "picture"
    # machine-task files name a per-task adapter (a zoo folder of kind "adapter") in
    # ``adapter_hash``; without one, they name the task network the decoder runs
    adapter: bool = False
    # safetensors keys of a model file that count as learned parameters (``icm models``);
    # empty: every tensor but batch-norm statistics
    param_prefixes: tuple[str, ...] = ()
    code: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.produces not in PRODUCES:
            raise ValueError(f"method {self.name}: produces must be one of {PRODUCES}, not {self.produces!r}")
        missing = {"codec", "tiny"} - set(self.code) | ({"tiny_adapter"} - set(self.code) if self.adapter else set())
        if missing:
            raise ValueError(f"method {self.name} declares no {', '.join(sorted(missing))}")

    @property
    def header_names(self) -> str:
        """What a machine-task file's ``adapter_hash`` names, as a store kind: the
        per-task ``adapter``; for a picture method the ``tasknet`` its decoder runs; for
        a method with one model per task and no adapter, that model itself (``codec``:
        ``adapter_hash`` repeats ``model_hash``)."""
        if self.adapter:
            return "adapter"
        return "tasknet" if self.produces == "picture" else "codec"

    def serves(self, header) -> tuple[str, ...]:
        """The outputs a file of this method can give, its own task first (the spec's
        "tasks a file serves"), without loading a model: the method's ``serves`` if it
        declares one, else :func:`default_serves`."""
        if "serves" in self.code:
            return tuple(self.load("serves")(header))
        return default_serves(self.produces, header)

    def ref(self, what: str) -> str:
        """The ``module:attr`` registered as ``what``, made absolute."""
        try:
            ref = self.code[what]
        except KeyError:
            raise LookupError(f"method {self.name} has no {what}") from None
        return self.package + ref if ref.startswith(".") else ref

    def load(self, what: str):
        """The class or function registered as ``what`` (imported on first use)."""
        module, _, attr = self.ref(what).partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, config: dict, state: dict, model_hash: bytes, device):
        """The coding-time codec of a shipped model of this method."""
        return self.load("codec")(config, state, model_hash, device)

    @property
    def train_command(self) -> str:
        """How a user trains this method (its adapters, for an adapter method)."""
        if "train" not in self.code:
            return "(no trainer)"
        module = self.ref("train").partition(":")[0]
        # a shared trainer outside the package (icmcodec.train) is told which method
        shared = not module.startswith(self.package + ".")
        return f"python -m {module}" + (f" --method {self.name}" if shared else "")

    def counts_as_parameter(self, key: str) -> bool:
        """Whether a model file's tensor ``key`` is a learned parameter (not a table, a
        statistic or an integer twin of another tensor)."""
        return counts_as_parameter(key, self.param_prefixes)


def default_serves(produces: str, header) -> tuple[str, ...]:
    """The default rule: a picture method's recon file serves every task (a machine task
    through the task's default network), its machine-task file its task and recon; a
    method that codes features or the task, its own task only."""
    own = header.task.name.lower()
    if produces != "picture":
        return (own,)
    if header.task == TaskTag.RECON:
        return tuple(t.name.lower() for t in TaskTag)
    return (own, "recon")


def counts_as_parameter(key: str, prefixes: tuple[str, ...] = ()) -> bool:
    """A model file's tensor ``key`` is a learned parameter: it starts with one of
    ``prefixes``, or, without prefixes, it is not a batch-norm statistic."""
    if prefixes:
        return key.startswith(prefixes)
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
