"""Prompt-ICM (Feng et al., CVPR 2024): one feature codec for every task, steered by
task-driven importance maps, with task-adaptive prompts at the decoder.

``model`` (networks), ``staged`` (a timm backbone cut at its stage-1 feature), ``codec``
(coding time), ``export`` (base and per-task adapters), ``train`` (the codec, then each
task). See the README's "Prompt-ICM" section for what ships and how it compares.
"""
from bitstream import MethodId, TaskTag
from icmcodec.methods.spec import MethodSpec

SPEC = MethodSpec(
    "prompt-icm", MethodId.PROMPT_ICM, (TaskTag.SEMSEG, TaskTag.CLS, TaskTag.SALIENCY),
    "a frozen ImageNet backbone's stage-1 features coded by one controllable feature codec, steered per task by "
    "an importance map (compression prompt); the decoder finishes the task with task-adaptive prompts in the "
    "task network's frozen later stages and its head (Prompt-ICM); no picture",
    package=__name__, produces="features", adapter=True,
    param_prefixes=("float.", "exact.h_s.", "exact.log2_gain", "exact.z_median", "extractor."),
    code={"codec": ".codec:PromptIcmCodec", "export": ".export:main", "trainable": ".export:trainable_from_state",
          "model": ".model:make_feature_codec", "config": ".model:PromptIcmConfig", "train": ".train:main",
          "tiny": ".tiny:write_tiny_prompt_icm_model", "tiny_adapter": ".tiny:write_tiny_prompt_icm_adapter"},
)
