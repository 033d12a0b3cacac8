"""Exact integer arithmetic for every number that drives the entropy coder.

A learned codec decodes only if the decoder derives the *same* table index and mean
for every latent symbol as the encoder did. Float convolutions differ between CPUs,
thread counts and GPUs, so this path is integer by construction (Balle et al. 2019,
"Integer networks for data compression"):

* Values are fixed-point integers: activations carry ``ACT_FRAC`` fractional bits,
  weights ``W_FRAC``; biases ``ACT_FRAC + W_FRAC``.
* They are held in float64 tensors, where every integer of magnitude below 2**53 is
  exact. The bounds below keep every product and every partial sum of a convolution
  under 2**53, so the result is the exact integer whatever the summation order,
  blocking or device (CPU BLAS, cuBLAS: float64 has no TF32-style shortcuts).
  ``|activation| <= ACT_LIMIT`` (clamped), ``|weight| <= W_LIMIT`` and
  ``|bias| <= B_LIMIT`` (checked at export), at most ``MAX_FAN_IN`` terms:
  ``2**22 * 2**16 * 2**13 + 2**51 < 2**53``.
* Rescaling is ``floor(x / 2**W_FRAC)``: a power-of-two division (exact) and a floor
  (exact). ReLU, leaky ReLU with a power-of-two slope, clamping, concatenation and
  pixel shuffle are exact.
* Quality enters as an integer addition of log2 gains (linear interpolation on a
  1/256 quality grid with integer arithmetic), scale indices come from integer
  division, and gained means use a baked integer table of ``2**(f/1024)``.

The package is in two parts: :mod:`icmcodec.exact.layers`, the fixed-point building
blocks (k x k and 1 x 1 convolutions, pixel shuffle, ReLU / leaky ReLU, channel
concatenation) and :class:`~icmcodec.exact.layers.Plan`, a network written as a list of
those; and :mod:`icmcodec.exact.params`, the integer rules that turn a network's output
into the coder's table index and mean. A method's integer twin is a ``Plan`` plus the
trained weights quantized once at export: a config, not new arithmetic.
"""
from icmcodec.exact.layers import (
    ACT_FRAC, ACT_LIMIT, B_LIMIT, MAX_FAN_IN, W_FRAC, W_LIMIT, Plan, concat, conv, leaky_relu, pixel_shuffle,
    quantize_conv, relu,
)
from icmcodec.exact.params import (
    EXTRAPOLATE_LEVELS, POW2_BITS, QUALITY_FRAC, SCALE_COUNT, SCALE_LS0, SCALE_STEP, entropy_params, gain_shift,
    pow2_table, quality_log2_gain, scale_table,
)

__all__ = [
    "ACT_FRAC", "ACT_LIMIT", "B_LIMIT", "MAX_FAN_IN", "W_FRAC", "W_LIMIT", "Plan", "concat", "conv", "leaky_relu",
    "pixel_shuffle", "quantize_conv", "relu", "EXTRAPOLATE_LEVELS", "POW2_BITS", "QUALITY_FRAC", "SCALE_COUNT",
    "SCALE_LS0", "SCALE_STEP", "entropy_params", "gain_shift", "pow2_table", "quality_log2_gain", "scale_table",
]
