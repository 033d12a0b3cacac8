"""The one registry: method names <-> bitstream ids <-> the packages that implement them.

Methods are found, not listed: every subpackage of :mod:`icmcodec.methods` whose
``__init__`` defines ``SPEC`` (a :class:`~icmcodec.methods.spec.MethodSpec`) is a
method, so adding one is adding its package and nothing else (a hand-kept list here
would be one more file every new method edits). A package outside icm (an experiment,
the test suite's own method) joins through :func:`register` with the same spec. Every
other table (CLI choices, ``icm models``, the decoder's dispatch on the header's method
id, the exporter, the trainers) is derived from ``METHODS``. Importing the registry
imports each method's torch-free ``__init__`` only.

The default method of each task (``icm encode --task T`` without ``--method``) is the
measured best: ``default_methods.json`` beside this module names it per task with the
stored benchmark result it comes from (``benchmarks/defaults.py`` writes the file from
those results; a test checks that they still agree).
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from functools import lru_cache
from pathlib import Path

from bitstream import MethodId, TaskTag, method_name
from icmcodec import methods as _methods_pkg
from icmcodec.methods.spec import MethodSpec

TASK_NAMES = {t.name.lower(): t for t in TaskTag}
DEFAULTS_FILE = Path(__file__).with_name("default_methods.json")


def _discover() -> dict[str, MethodSpec]:
    found: dict[str, MethodSpec] = {}
    for info in sorted(pkgutil.iter_modules(_methods_pkg.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"{_methods_pkg.__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, MethodSpec):
            _check_new(found, spec)
            found[spec.name] = spec
    return found


def _check_new(known: dict[str, MethodSpec], spec: MethodSpec) -> None:
    if spec.name in known:
        raise ValueError(f"two methods are named {spec.name}")
    for other in known.values():
        if int(other.method_id) == int(spec.method_id):
            raise ValueError(f"methods {other.name} and {spec.name} both claim bitstream method id "
                             f"{int(spec.method_id)}")


METHODS: dict[str, MethodSpec] = _discover()


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method from a package outside :mod:`icmcodec.methods` (the same spec a
    shipped package declares); its name and method id must be new."""
    _check_new(METHODS, spec)
    METHODS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method added by :func:`register` (tests)."""
    METHODS.pop(name, None)


def method_by_id(mid: MethodId | int) -> MethodSpec:
    for spec in METHODS.values():
        if int(spec.method_id) == int(mid):
            return spec
    label = method_name(mid) if int(mid) in MethodId._value2member_map_ else str(int(mid))
    raise LookupError(f"method {label} is not implemented in this version of icm")


@lru_cache(maxsize=1)
def default_choices() -> dict[str, dict]:
    """``default_methods.json``: per task, the method ``icm encode`` uses and why."""
    doc = json.loads(DEFAULTS_FILE.read_text())
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def default_method(task: str) -> MethodSpec:
    """The method ``icm encode --task T`` uses without ``--method``: the one with the
    best stored rate-accuracy on T (``default_methods.json``), else, for a task nobody
    measured yet, the reference picture method (``hyperprior``: the picture codec and
    the task's clean network)."""
    tag = TASK_NAMES[task]
    name = default_choices().get(task, {}).get("method", "hyperprior")
    spec = METHODS.get(name)
    if spec is None or tag not in spec.tasks:  # a measured method this installation lacks
        spec = METHODS["hyperprior"]
    return spec
