"""The context model: the hyperprior plus checkerboard spatial context and uneven
channel slices, every entropy parameter exact (a second reconstruction codec).

| module | what |
|---|---|
| ``model`` | config and trainable network (warm-starts from any hyperprior model) |
| ``exact`` | the integer twin of the context and parameter networks |
| ``export`` | trained checkpoint -> shipped model file |
| ``codec`` | coding time: slices and passes in one range-coded stream |

Training: ``python -m icmcodec.train --method context --init MODEL_DIR ...``.
"""
