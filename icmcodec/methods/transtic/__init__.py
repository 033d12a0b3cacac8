"""TransTIC (Chen et al., ICCV 2023): a transformer codec for people (TIC), transferred
to a machine task by prompts, with the codec frozen.

| module | what |
|---|---|
| ``model`` | TIC (hybrid or paper layout) built from :mod:`icmcodec.layers.swin`; the prompt generator; the prompt set; the warm start from a hyperprior |
| ``export`` | TIC -> the shipped model file (the hyperprior's format); prompt sets -> ``adapter`` folders |
| ``codec`` | coding time: TIC's chunks with a prompt set bound on (tiled, exact like every method) |
| ``train`` | a task's prompt set, TIC and the task network frozen (TIC itself: ``python -m icmcodec.train --method transtic``) |

Files: method id ``TRANSTIC`` (2); ``adapter_hash`` names the prompt set, which names
the base model and the task network; ``--task recon`` gives the (machine-oriented)
picture.
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "transtic", MethodId.TRANSTIC, tuple(TaskTag),
    "TIC (Swin-transformer blocks in the transforms) transferred to a machine task by an adapter: instance "
    "prompts at the encoder, task prompts at the decoder (TransTIC); the decoder runs the task's clean network "
    "on the machine-oriented picture",
    package=__name__, adapter=True,
    param_prefixes=("float.", "exact.h_s.", "exact.log2_gain", "exact.z_median"),
    code={"codec": ".codec:TransticCodec", "export": ".export:main", "trainable": ".export:trainable_from_state",
          "model": ".model:TIC", "config": ".model:TransticConfig", "train": ".train:main",
          "tiny": ".tiny:write_tiny_transtic_model", "tiny_adapter": ".tiny:write_tiny_transtic_adapter"},
)
