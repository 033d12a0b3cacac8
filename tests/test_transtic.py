"""TransTIC's networks on tiny configurations: the warm start, the prompt shapes, the
paths that prompts take and the ones they must not."""
import pytest
import torch

from icmcodec.layers.swin import SwinBlock
from icmcodec.methods.hyperprior.model import GainedHyperprior
from icmcodec.methods.hyperprior.transforms import HyperpriorConfig
from icmcodec.methods.transtic.model import NAMED, TIC, TransTIC, TransticConfig, from_hyperprior, prompted_scales

TINY = dict(N=16, M=16, Nz=8, Nh=16, levels=2, lambdas=(0.01, 0.05), window=4, depth=2, heads=2,
            prompt_tokens=4, generator_width=8)


def tiny_hp() -> GainedHyperprior:
    torch.manual_seed(0)
    hp = GainedHyperprior(HyperpriorConfig(N=16, M=16, Nz=8, Nh=16, levels=2, lambdas=(0.01, 0.05))).eval()
    with torch.no_grad():
        for p in hp.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return hp


def test_the_hybrid_warm_start_is_the_hyperprior_exactly():
    hp = tiny_hp()
    tic = from_hyperprior(hp, TransticConfig(**TINY)).eval()
    assert [i for i, _ in tic.g_a.blocks()] == [4, 7] and [i for i, _ in tic.g_s.blocks()] == [2, 5]
    x = torch.rand(1, 3, 64, 64)
    lv = torch.tensor([1])
    a, b = hp(x, lv), tic(x, lv)
    for k in ("x_hat", "y_lik", "z_lik"):
        assert torch.equal(a[k], b[k]), k


def test_prompts_reach_both_sides_and_their_counts_follow_the_paper():
    cfg = TransticConfig(**TINY)
    tic = from_hyperprior(tiny_hp(), cfg)
    with torch.no_grad():  # trained blocks: give the zero projections some weight
        for _, blk in tic.g_a.blocks() + tic.g_s.blocks():
            blk.proj.weight.normal_(0, 0.1)
    tic.eval()
    assert prompted_scales(tic.g_a) == [4, 8]
    ps = TransTIC(cfg, tic)
    x = torch.rand(2, 3, 64, 64)
    maps = ps.generator(x)
    # one map per Swin layer, at half the block's resolution: a quarter of each window's tokens
    assert [[tuple(m.shape) for m in blk] for blk in maps] == [[(2, 16, 8, 8)] * 2, [(2, 16, 4, 4)] * 2]
    assert [[tuple(p.shape) for p in blk] for blk in ps.task_prompts.per_block()] == [[(4, 16)] * 2] * 2
    lv = torch.tensor([0, 1])
    plain = tic(x, lv)
    both = ps(tic, x, lv)
    enc = ps(tic, x, lv, decoder=False)
    dec = ps(tic, x, lv, encoder=False)
    assert not torch.equal(both["x_hat"], plain["x_hat"])
    # decoder prompts change only the synthesis: the coded latent and its rate stay TIC's
    assert torch.equal(dec["y_lik"], plain["y_lik"]) and not torch.equal(dec["x_hat"], plain["x_hat"])
    # encoder prompts change what is coded
    assert not torch.equal(enc["y_lik"], plain["y_lik"])


def test_only_the_prompt_set_trains_and_its_gradients_arrive():
    cfg = TransticConfig(**TINY)
    tic = from_hyperprior(tiny_hp(), cfg)
    with torch.no_grad():
        for _, blk in tic.g_a.blocks() + tic.g_s.blocks():
            blk.proj.weight.normal_(0, 0.1)
    tic.requires_grad_(False)
    ps = TransTIC(cfg, tic)
    out = ps(tic, torch.rand(1, 3, 64, 64), torch.tensor([1]))
    out["x_hat"].square().mean().backward()
    assert all(p.grad is None for p in tic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ps.parameters())
    n_ps = sum(p.numel() for p in ps.parameters())
    assert n_ps < 0.25 * sum(p.numel() for p in tic.parameters())


def test_named_configurations_build():
    for name in NAMED:
        cfg = TransticConfig(**{**NAMED[name], "levels": 2, "lambdas": (0.01, 0.05)})
        tic = TIC(cfg)
        assert len(tic.g_a.blocks()) == (2 if cfg.layout == "hybrid" else 3)
        assert all(isinstance(m, SwinBlock) for _, m in tic.g_s.blocks())
    assert TransticConfig.from_dict(TransticConfig(**TINY).to_dict()) == TransticConfig(**TINY)
    with pytest.raises(ValueError, match="layout"):
        TIC(TransticConfig(**{**TINY, "layout": "other"}))
