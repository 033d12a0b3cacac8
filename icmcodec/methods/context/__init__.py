"""The context model: the hyperprior plus checkerboard spatial context and uneven
channel slices, every entropy parameter exact (a second reconstruction codec).

| module | what |
|---|---|
| ``codec`` | coding time: a hyperprior holding channel slices of checkerboards (:mod:`icmcodec.coding`) |
| ``export`` | trained checkpoint -> shipped model file |
| ``fit_entropy`` | fit the context and parameter networks on cached latents, transforms frozen |
| ``tiny`` | a tiny seeded model for tests |

Its config, trainable network and integer twin live in :mod:`icmcodec.coding`
(``context_config``, ``context_net``, ``slices``), where other methods reuse them.
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
    code={"codec": ".codec:ContextCodec", "export": ".export:main",
          "trainable": "icmcodec.coding.export:context_from_state",
          "model": "icmcodec.coding.context_net:GainedContext",
          "config": "icmcodec.coding.context_config:ContextConfig", "train": "icmcodec.train:main",
          "tiny": ".tiny:write_tiny_context_model"},
)
