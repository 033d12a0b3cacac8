"""MPA (Zhang et al., NeurIPS 2024, "All-in-One Image Coding for Joint Human-Machine
Vision with Multi-Path Aggregation") on the frozen TIC base: one file, any task.

| module | what |
|---|---|
| ``paths`` | the wrapped Swin MLP: main path (the base's), per-task side path, token predictor, ratio loss |
| ``codec`` | coding time: the base's chunks; decoding through the asked task's paths at the asked strength |
| ``serves`` | the tasks a file can give: its own, recon, every task with an installed path set (torch-free) |
| ``export`` | the MPA model (a binding to its base) and path set folders |
| ``train`` | a task's path set, base and task network frozen |
| ``tiny`` | seeded tiny base, binding and path set for tests |

Files: method id ``MPA`` (5); ``model_hash`` names the MPA model (which names its base);
a machine-task file's ``adapter_hash`` names the path set of the task given to ``icm
encode --task`` (the header's default output only: the coded stream is the same for
every task).
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "mpa", MethodId.MPA, tuple(TaskTag),
    "one file for every task: the frozen TIC base codes the picture once; at decode time a task's side paths "
    "(small MLPs beside the Swin MLPs of the decoder, tokens chosen by a predictor at a strength rho) shape "
    "the picture for that task's network (multi-path aggregation)",
    package=__name__, adapter=True,
    param_prefixes=("paths.",),  # the MPA model file holds only its base's hash: no parameters of its own
    code={"codec": ".codec:MpaCodec", "export": ".export:main", "train": ".train:main",
          "serves": ".serves:served_tasks", "tiny": ".tiny:write_tiny_mpa_model",
          "tiny_adapter": ".tiny:write_tiny_mpa_adapter"},
)
