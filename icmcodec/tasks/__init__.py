"""Machine tasks: metrics (``metrics``) and output writers (``writers``).

The task registry (head, loss, label set per task) builds on these; each task's
output files are described in :mod:`icmcodec.tasks.writers`.
"""
