"""The context model's integer twin: per slice, three :class:`~icmcodec.exact.Plan`\\ s.

It lives in :mod:`icmcodec.coding.slices` with the channel-slices y codec that runs it;
re-exported here under its old names for the export and the tests.
"""
from icmcodec.coding.slices import CC, EP, SC, ExactContext, dequantize_into, quantize_context  # noqa: F401
