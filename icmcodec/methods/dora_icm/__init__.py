"""DoRA-ICM (Wang et al., "Low-Rank Adaptation of Pre-trained Vision Backbones for
Energy-Efficient Image Coding for Machines"): the frozen pre-trained backbone with
per-task DoRA adapters at the encoder, a preliminary decoder whose task features and
coarse prediction are coded with the shared hyperprior + checkerboard entropy model, and
a light transformer decoder that outputs the task itself (no task network at the decoder).

| module | what |
|---|---|
| ``dora`` | DoRA wrappers for 1x1 convolutions and linear maps, merge, adapter state |
| ``decoder`` | the low-complexity decoder (low-cost and cross-scale attention, EVA-02-style blocks) |
| ``model`` | config, backbone, preliminary decoder, entropy model, the whole trainable network |
| ``train`` | a task's set: adapters, preliminary decoder, entropy model and decoder, backbone frozen |
| ``codec`` | coding time: merged adapters at the encoder, exact entropy model, two pass chunks, the decoder |
| ``export`` | trained run -> one model folder per task (no backbone in it) |
| ``tiny`` | a tiny seeded set for tests |
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "dora-icm", MethodId.DORA_ICM,
    (TaskTag.SEMSEG, TaskTag.BOUNDARY, TaskTag.SALIENCY, TaskTag.DEPTH, TaskTag.NORMAL),
    "frozen pre-trained backbone with per-task DoRA adapters at the encoder, task features and a coarse "
    "prediction coded with the exact hyperprior + checkerboard model, a light transformer decoder that outputs "
    "the task (one model folder per task)",
    package=__name__, produces="task",
    param_prefixes=("adapter.", "float.", "exact.h_s.", "exact.ctx.", "exact.log2_gain", "exact.z_median"),
    code={"codec": ".codec:DoraIcmCodec", "export": ".export:main", "model": ".model:DoraIcm",
          "config": ".model:DoraIcmConfig", "train": ".train:main", "tiny": ".tiny:write_tiny_dora_model"},
)
