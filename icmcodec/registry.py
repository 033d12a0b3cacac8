"""The one registry: method names <-> bitstream ids <-> the code that implements them.

Every other table (CLI choices, ``icm models``, the decoder's dispatch on the header's
method id, the exporter, the trainer) is derived from ``METHODS``; nothing keeps its
own list. An entry names its code lazily, as ``"module:attribute"`` strings, so
importing the registry imports neither torch nor any method it does not use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from bitstream import MethodId, TaskTag


@dataclass(frozen=True)
class MethodSpec:
    name: str
    method_id: MethodId
    tasks: tuple[TaskTag, ...]
    summary: str
    # what the decoder produces: "picture" (a task network runs on it for machine tasks),
    # "features" (a decoder-side head finishes the task) or "task" (the output itself)
    produces: str = "picture"
    # the zoo kind of the per-task adapter a machine-task file names in adapter_hash
    # (None: the task network itself, for methods that code a plain picture)
    adapter: str | None = None
    # "codec", "export", "trainable" (shipped state -> trainable model), "model",
    # "config": "module:attribute"
    code: dict = field(default_factory=dict)

    def load(self, what: str):
        """The class or function registered as ``what`` (imported on first use)."""
        try:
            module, _, attr = self.code[what].partition(":")
        except KeyError:
            raise LookupError(f"method {self.name} has no {what}") from None
        return getattr(importlib.import_module(module), attr)

    def build(self, config: dict, state: dict, model_hash: bytes, device):
        """The coding-time codec of a shipped model of this method."""
        return self.load("codec")(config, state, model_hash, device)


def _hyperprior(part: str) -> str:
    return f"icmcodec.methods.hyperprior.{part}"


def _context(part: str) -> str:
    return f"icmcodec.methods.context.{part}"


def _transtic(part: str) -> str:
    return f"icmcodec.methods.transtic.{part}"


def _prompt_icm(part: str) -> str:
    return f"icmcodec.methods.prompt_icm.{part}"


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("hyperprior", MethodId.HYPERPRIOR, tuple(TaskTag),
                   "gained mean-scale hyperprior with an exact integer entropy-parameter path; for a machine "
                   "task the decoder runs the task's clean network on the reconstruction (TIC anchor)",
                   code={"codec": _hyperprior("codec:HyperpriorCodec"), "export": _hyperprior("export:main"),
                         "trainable": _hyperprior("export:trainable_from_state"),
                         "model": _hyperprior("model:GainedHyperprior"),
                         "config": _hyperprior("transforms:HyperpriorConfig")}),
        MethodSpec("context", MethodId.CONTEXT, tuple(TaskTag),
                   "the hyperprior plus a checkerboard spatial context and uneven channel slices, every "
                   "entropy parameter in the exact integer path; machine tasks as for hyperprior",
                   code={"codec": _context("codec:ContextCodec"), "export": _context("export:main"),
                         "trainable": _context("export:trainable_from_state"),
                         "model": _context("model:GainedContext"), "config": _context("model:ContextConfig")}),
        MethodSpec("transtic", MethodId.TRANSTIC, tuple(TaskTag),
                   "TIC (Swin-transformer blocks in the transforms) transferred to a machine task by a prompt "
                   "set: instance prompts at the encoder, task prompts at the decoder (TransTIC); the decoder "
                   "runs the task's clean network on the machine-oriented picture",
                   adapter="adapter",
                   code={"codec": _transtic("codec:TransticCodec"), "export": _transtic("export:main"),
                         "trainable": _transtic("export:trainable_from_state"), "model": _transtic("model:TIC"),
                         "config": _transtic("model:TransticConfig")}),
        MethodSpec("prompt-icm", MethodId.PROMPT_ICM, (TaskTag.SEMSEG, TaskTag.CLS),
                   "a frozen ImageNet backbone's stage-1 features coded by one controllable feature codec, "
                   "steered per task by an importance map (compression prompt); the decoder finishes the task "
                   "with task-adaptive prompts in the task network's frozen later stages and its head "
                   "(Prompt-ICM); no picture",
                   produces="features", adapter="adapter",
                   code={"codec": _prompt_icm("codec:PromptIcmCodec"), "export": _prompt_icm("export:main"),
                         "trainable": _prompt_icm("export:trainable_from_state"),
                         "model": _prompt_icm("model:make_feature_codec"),
                         "config": _prompt_icm("model:PromptIcmConfig")}),
    )
}

TASK_NAMES = {t.name.lower(): t for t in TaskTag}


def method_by_id(mid: MethodId) -> MethodSpec:
    for spec in METHODS.values():
        if spec.method_id == mid:
            return spec
    raise LookupError(f"method {MethodId(mid).name.lower()} is not implemented in this version of icm")


def default_method(task: str) -> MethodSpec:
    """The method ``icm encode --task T`` uses without ``--method``: the first one in
    ``METHODS`` that codes the task (the order is the measured preference)."""
    tag = TASK_NAMES[task]
    for spec in METHODS.values():
        if tag in spec.tasks:
            return spec
    raise LookupError(f"no method codes task {task}")
