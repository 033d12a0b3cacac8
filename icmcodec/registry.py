"""The one registry: method names <-> bitstream ids <-> the class that codes them.

Every other table (CLI choices, ``icm models``, the decoder's dispatch on the header's
method id) is derived from ``METHODS``; nothing keeps its own list.
"""
from __future__ import annotations

from dataclasses import dataclass

from bitstream import MethodId, TaskTag


@dataclass(frozen=True)
class MethodSpec:
    name: str
    method_id: MethodId
    tasks: tuple[TaskTag, ...]
    summary: str

    def build(self, config: dict, state: dict, model_hash: bytes, device):
        # Imported here: the registry itself must stay importable without torch.
        if self.method_id == MethodId.HYPERPRIOR:
            from icmcodec.codec import HyperpriorCodec

            return HyperpriorCodec(config, state, model_hash, device)
        raise NotImplementedError(f"method {self.name} has no implementation in this version")


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("hyperprior", MethodId.HYPERPRIOR, tuple(TaskTag),
                   "gained mean-scale hyperprior with an exact integer entropy-parameter path; for a machine "
                   "task the decoder runs the task's clean network on the reconstruction (TIC anchor)"),
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
