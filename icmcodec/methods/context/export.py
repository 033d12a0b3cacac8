"""Export a trained context model: the hyperprior's file plus ``exact.ctx.*``.

``python -m icmcodec.zoo.export RUN/last.pt OUT_DIR --name NAME`` dispatches here for a
context checkpoint. Everything the hyperprior stores is stored the same way
(:mod:`icmcodec.methods.hyperprior.export`); the context and parameter networks are
added as integer weights (:func:`icmcodec.methods.context.exact.quantize_context`).
"""
from __future__ import annotations

import numpy as np

from icmcodec.methods.context.exact import dequantize_into, quantize_context
from icmcodec.methods.context.model import ContextConfig, GainedContext
from icmcodec.methods.hyperprior import export as hp


def export_state(model: GainedContext, compact: bool = False) -> dict[str, np.ndarray]:
    state = hp.export_state(model, compact)
    for k, v in quantize_context(model.ctx).items():
        small = compact and k.endswith("weight") and np.abs(v).max() <= np.iinfo(np.int16).max
        state["exact.ctx." + k] = v.astype(np.int16 if small else np.int32) if k.endswith("weight") else v
    return state


def trainable_from_state(config: dict, state: dict[str, np.ndarray]) -> GainedContext:
    model = GainedContext(ContextConfig.from_dict(config["arch"]))
    hp.trainable_from_state(config, state, model)
    dequantize_into(model.ctx, {k[len("exact.ctx."):]: v for k, v in state.items() if k.startswith("exact.ctx.")})
    return model


def main(argv=None) -> None:
    hp.main(argv, method="context", model_cls=GainedContext, config_cls=ContextConfig, export=export_state)


if __name__ == "__main__":
    main()
