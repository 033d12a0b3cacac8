"""The gained mean-scale hyperprior: icm's first codec for people (``recon``) and the
"human codec" anchor of the ICM papers for machine tasks.

| module | what |
|---|---|
| ``transforms`` | its config, the analysis/synthesis layouts, inference GDN |
| ``model`` | the trainable network (compressai's GDN and factorized prior) |
| ``exact`` | the integer twin of the hyper synthesis (a :class:`~icmcodec.exact.Plan`) |
| ``export`` | trained checkpoint -> shipped model file (tables, integer weights) |
| ``codec`` | coding time: picture <-> chunks, through the tiled executor |
| ``train`` | its training entry (the shared loop of :mod:`icmcodec.train`) |
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "hyperprior", MethodId.HYPERPRIOR, tuple(TaskTag),
    "gained mean-scale hyperprior with an exact integer entropy-parameter path; for a machine task the decoder "
    "runs the task's clean network on the reconstruction (TIC anchor)",
    package=__name__,
    param_prefixes=("float.", "exact.h_s.", "exact.log2_gain", "exact.z_median"),
    code={"codec": ".codec:HyperpriorCodec", "export": ".export:main", "trainable": ".export:trainable_from_state",
          "model": ".model:GainedHyperprior", "config": ".transforms:HyperpriorConfig", "train": ".train:main",
          "tiny": ".tiny:write_tiny_model"},
)
