"""Prompt-ICM (Feng et al., CVPR 2024): one feature codec for every task, steered by
task-driven importance maps, with task-adaptive prompts at the decoder.

``model`` (networks), ``staged`` (a timm backbone cut at its stage-1 feature), ``codec``
(coding time), ``export`` (base and per-task adapters), ``train`` (the codec, then each
task). See the README's "Prompt-ICM" section for what ships and how it compares.
"""
