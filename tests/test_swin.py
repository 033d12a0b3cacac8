"""Swin layers with prompts (icmcodec/layers/swin.py) against plain definitions."""
import pytest
import torch

from icmcodec.layers.swin import SwinBlock, SwinLayer, TaskPrompts, WindowAttention, window_merge, window_partition


def naive_attention(att: WindowAttention, x, prompts=None):
    """Per window and head, softmax over [own tokens; prompts] with the layer's weights."""
    c, heads = att.dim, att.heads
    d = c // heads
    wq, wk, wv = att.qkv.weight.split(c)
    bq, bk, bv = att.qkv.bias.split(c)
    n = x.shape[1]
    bias = att.rel_bias[att.rel_index.view(-1)].view(n, n, heads)
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        keys_in = x[b] if prompts is None else torch.cat([x[b], prompts[b] if prompts.dim() == 3 else prompts])
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            q = (x[b] @ wq[sl].T + bq[sl]) * d ** -0.5
            k = keys_in @ wk[sl].T + bk[sl]
            v = keys_in @ wv[sl].T + bv[sl]
            logits = q @ k.T
            logits[:, :n] += bias[:, :, h]
            out[b, :, sl] = logits.softmax(-1) @ v
    return out @ att.proj.weight.T + att.proj.bias


@pytest.mark.parametrize("kind", ["none", "instance", "task"])
def test_window_attention_matches_a_naive_reference(kind):
    torch.manual_seed(0)
    att = WindowAttention(8, 2, 4).double()
    x = torch.randn(3, 16, 8, dtype=torch.float64)
    p = {"none": None, "instance": torch.randn(3, 4, 8, dtype=torch.float64),
         "task": torch.randn(5, 8, dtype=torch.float64)}[kind]
    got = att(x, prompts=p)
    assert got.shape == x.shape  # prompt tokens are dropped after attention
    torch.testing.assert_close(got, naive_attention(att, x, p))


def test_partition_and_merge_are_inverse():
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(window_merge(w, 4, 8, 12), x)


def _layer(shift):
    torch.manual_seed(1)
    layer = SwinLayer(8, 2, window=4, shift=shift).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # non-trivial norms and biases
    return layer


def test_shifted_windows_never_mix_across_the_wrap_around():
    """In a shifted layer on 8x8 with window 4, the top-left and bottom-right tokens
    land in one rolled window; the mask keeps them apart. Their own neighbours do mix.
    Instance prompts are rolled and masked the same way."""
    layer = _layer(shift=True)
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    prompts = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    base = layer(x, prompts)
    x2 = x.clone()
    x2[0, 0, 0, 0] += 1.0  # one channel: LayerNorm would cancel a shift of all of them
    moved = layer(x2, prompts) - base
    assert moved[..., 7, 7].abs().max() == 0  # across the wrap: untouched
    assert moved[..., 1, 1].abs().max() > 1e-6  # same shifted window, same region: mixed
    p2 = prompts.clone()
    p2[..., 0, 0] += 1.0
    moved = layer(x, p2) - base
    assert moved[..., 7, 7].abs().max() == 0
    assert moved[..., 1, 1].abs().max() > 1e-6


def test_unshifted_windows_see_only_themselves_and_their_prompts():
    layer = _layer(shift=False)
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    prompts = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    base = layer(x, prompts)
    x2 = x.clone()
    x2[0, 0, 3, 3] += 1.0  # last token of the first window (one channel)
    moved = (layer(x2, prompts) - base).abs().amax(1)[0]
    assert moved[0, 0] > 1e-6 and moved[4:, :].max() == 0 and moved[:, 4:].max() == 0
    p2 = prompts.clone()
    p2[..., 3, 3] += 1.0  # a prompt of the bottom-right window
    moved = (layer(x, p2) - base).abs().amax(1)[0]
    assert moved[4:, 4:].max() > 1e-6 and moved[:4, :].max() == 0


def test_task_prompts_are_shared_by_every_window():
    """With task prompts, each window's output is that window's alone run with the same
    prompts: they carry no position and do not depend on the picture size."""
    layer = _layer(shift=False)
    x = torch.randn(1, 8, 8, 12, dtype=torch.float64)
    tp = torch.randn(3, 8, dtype=torch.float64)
    whole = layer(x, tp)
    for y0 in (0, 4):
        for x0 in (0, 4, 8):
            alone = layer(x[..., y0:y0 + 4, x0:x0 + 4], tp)
            torch.testing.assert_close(whole[..., y0:y0 + 4, x0:x0 + 4], alone)


def test_zero_initialised_block_is_the_identity_and_odd_sizes_work():
    block = SwinBlock(8, depth=2, heads=2, window=4)
    x = torch.randn(2, 8, 10, 14)
    assert torch.equal(block(x), x)
    assert torch.equal(block(x, [torch.randn(2, 8, 5, 7)] * 2), x)
    block = SwinBlock(8, depth=2, heads=2, window=4, zero_init=False)
    assert block(x).shape == x.shape and not torch.equal(block(x), x)
    with pytest.raises(ValueError, match="instance prompts"):
        block(x, [torch.randn(2, 8, 4, 4)] * 2)


def test_task_prompts_per_block():
    tp = TaskPrompts([(8, 2), (16, 4)], tokens=16)
    blocks = tp.per_block()
    assert [len(b) for b in blocks] == [2, 4]
    assert blocks[0][0].shape == (16, 8) and blocks[1][3].shape == (16, 16)
    assert sum(p.numel() for p in tp.parameters()) == 16 * (8 * 2 + 16 * 4)
