"""TransTIC (Chen et al., ICCV 2023): a transformer codec for people, transferred to a
machine task by prompts, with the codec frozen.

| module | what |
|---|---|
| ``model`` | TIC (hybrid or paper layout), the prompt generator, the prompt set; warm start from a hyperprior |
"""
