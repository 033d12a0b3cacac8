"""The hyperprior's integer twin: its hyper synthesis as a :class:`~icmcodec.exact.Plan`.

It lives in :mod:`icmcodec.coding.hyperprior` (every method's hyperprior runs it);
re-exported here under its old names for the export and the tests.
"""
from icmcodec.coding.hyperprior import HS_PLAN, ExactHyperSynthesis, quantize_hyper_synthesis  # noqa: F401
