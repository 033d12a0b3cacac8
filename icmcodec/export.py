"""Export a trained checkpoint to the shipped format, whatever its method.

``python -m icmcodec.export RUN/last.pt OUT_DIR --name NAME [--default] [--compact]``
reads the method a checkpoint was trained with (``"method"`` in it; hyperprior for
checkpoints from before methods were packages) and runs that method's exporter
(``icmcodec.methods.<name>.export``), which writes ``config.json`` and
``model.safetensors``. The model's hash in every ``.icm`` header is the first 16 bytes
of the SHA-256 of that file (:func:`icmcodec.zoo.model_hash`).
"""
from __future__ import annotations

import sys

from icmcodec.zoo import model_hash  # noqa: F401  (re-exported: export.model_hash)


def main(argv=None) -> None:
    import torch

    from icmcodec.registry import METHODS

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        METHODS["hyperprior"].load("export")(["--help"])
        return
    try:
        method = torch.load(argv[0], map_location="cpu", weights_only=False).get("method", "hyperprior")
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"error: cannot read checkpoint {argv[0]} ({e})") from None
    if method not in METHODS:
        raise SystemExit(f"error: the checkpoint is of method {method!r}, unknown to this icm")
    METHODS[method].load("export")(argv)


if __name__ == "__main__":
    main()
