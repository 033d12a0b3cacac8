"""Transitional: the tiny test models now live in their method packages
(``icmcodec.methods.<name>.tiny``, the spec's ``tiny``); removed before release."""
from icmcodec.methods.context.tiny import *  # noqa: F401,F403
from icmcodec.methods.hyperprior.tiny import *  # noqa: F401,F403
from icmcodec.methods.prompt_icm.tiny import *  # noqa: F401,F403
from icmcodec.methods.prompt_icm.tiny import _seeded  # noqa: F401
from icmcodec.methods.transtic.tiny import *  # noqa: F401,F403
from icmcodec.tasks.backbone import TINY_PVT  # noqa: F401
