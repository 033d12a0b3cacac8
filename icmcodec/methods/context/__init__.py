"""The context model: the hyperprior plus checkerboard spatial context and uneven
channel slices, every entropy parameter exact (a second reconstruction codec).

| module | what |
|---|---|
| ``model`` | config and trainable network (warm-starts from any hyperprior model) |
| ``exact`` | the integer twin of the context and parameter networks |
| ``export`` | trained checkpoint -> shipped model file |
| ``codec`` | coding time: slices and passes in one range-coded stream |

Training: ``python -m icmcodec.train --method context --init MODEL_DIR ...``.
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "context", MethodId.CONTEXT, tuple(TaskTag),
    "the hyperprior plus a checkerboard spatial context and uneven channel slices, every entropy parameter in "
    "the exact integer path; machine tasks as for hyperprior",
    package=__name__,
    param_prefixes=("float.", "exact.h_s.", "exact.ctx.", "exact.log2_gain", "exact.z_median"),
    code={"codec": ".codec:ContextCodec", "export": ".export:main", "trainable": ".export:trainable_from_state",
          "model": ".model:GainedContext", "config": ".model:ContextConfig", "train": "icmcodec.train:main",
          "tiny": ".tiny:write_tiny_context_model"},
)
