"""The gained mean-scale hyperprior: icm's first codec for people (``recon``) and the
"human codec" anchor of the ICM papers for machine tasks.

| module | what |
|---|---|
| ``codec`` | coding time: picture <-> chunks, composed of :mod:`icmcodec.coding`'s tiled transforms and hyperprior |
| ``export`` | trained checkpoint -> shipped model file (:mod:`icmcodec.coding.export`) |
| ``tiny`` | a tiny seeded model for tests |

The trainable network (:mod:`icmcodec.coding.hyperprior_net`), its config
(:mod:`icmcodec.layers.transforms`) and its export live below the methods: TIC, Prompt-ICM and
the context model build on them. Training: ``python -m icmcodec.train`` (the shared loop of the
coding models; hyperprior is its default ``--method``).
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "hyperprior", MethodId.HYPERPRIOR, tuple(TaskTag),
    "gained mean-scale hyperprior with an exact integer entropy-parameter path; for a machine task the decoder "
    "runs the task's clean network on the reconstruction (TIC anchor)",
    package=__name__,
    param_prefixes=("float.", "exact.h_s.", "exact.log2_gain", "exact.z_median"),
    code={"codec": ".codec:HyperpriorCodec", "export": ".export:main",
          "trainable": "icmcodec.coding.export:trainable_from_state",
          "model": "icmcodec.coding.hyperprior_net:GainedHyperprior",
          "config": "icmcodec.layers.transforms:HyperpriorConfig", "train": "icmcodec.train:main",
          "tiny": ".tiny:write_tiny_model"},
)
