"""Export a trained context checkpoint: the hyperprior's file plus ``exact.ctx.*``
(:func:`icmcodec.coding.export.export_context_state`). ``python -m icmcodec.export
RUN/last.pt OUT_DIR --name NAME`` dispatches here."""
from icmcodec.coding import export as _export
from icmcodec.coding.context_config import ContextConfig
from icmcodec.coding.context_net import GainedContext


def main(argv=None) -> None:
    _export.main(argv, method="context", model_cls=GainedContext, config_cls=ContextConfig,
                 export=_export.export_context_state)


if __name__ == "__main__":
    main()
