"""TransTIC's networks on tiny configurations: the warm start, the prompt shapes, the
paths that prompts take and the ones they must not."""
import json

import numpy as np
import pytest
import torch
from conftest import write_tiny_tasknet

from icmcodec import pipeline
from icmcodec.layers.swin import SwinBlock
from icmcodec.methods.hyperprior.codec import Tiling
from icmcodec.coding.hyperprior_net import GainedHyperprior
from icmcodec.layers.transforms import HyperpriorConfig
from icmcodec.methods.transtic.model import NAMED, TIC, TransTIC, TransticConfig, from_hyperprior, prompted_scales
from icmcodec.methods.hyperprior.tiny import tiny_codec, write_tiny_model
from icmcodec.methods.transtic.tiny import tiny_transtic_model, write_tiny_transtic_adapter, write_tiny_transtic_model

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


# ---------------------------------------------------------------- coding time


@pytest.fixture()
def zoo_dir(tmp_path, monkeypatch):
    m = tmp_path / "models"
    write_tiny_transtic_model(m / "tt")
    write_tiny_transtic_model(m / "tt-id", active=False)
    write_tiny_model(m / "hp")
    write_tiny_tasknet(m / "seg", "semseg", name="tiny-semseg")
    write_tiny_transtic_adapter(m / "ps-seg", m / "tt", m / "seg", "semseg")
    write_tiny_transtic_adapter(m / "ps-seg-dec", m / "tt", m / "seg", "semseg", encoder=False)
    monkeypatch.setenv("ICM_MODEL_PATH", str(m))
    pipeline._load_adapter.cache_clear()
    return m


def picture(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 2, yy * 3, (xx + yy) * 2], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def payloads(data: bytes) -> list[bytes]:
    import bitstream

    return [c.data for c in bitstream.unpack(data).chunks]


def test_tic_with_identity_blocks_codes_the_hyperprior_bytes_exactly(zoo_dir):
    rgb = picture()
    hp = tiny_codec(0)
    tic = pipeline.load_codec("test-tiny-transtic-0-identity", device="cpu")
    assert payloads(pipeline.encode_image(rgb, quality=1.5, codec=tic)) == \
        payloads(pipeline.encode_image(rgb, quality=1.5, codec=hp))


def test_without_encoder_prompts_the_stream_is_tics(zoo_dir):
    """A prompt set with decoder prompts only (and --task recon, no set at all): the
    encoder is TIC's, byte for byte; the encoder prompts change the stream."""
    rgb = picture()
    tic = pipeline.load_codec("test-tiny-transtic-0", device="cpu")
    net = pipeline.load_tasknet("semseg", "tiny-semseg", device="cpu")
    recon = pipeline.encode_image(rgb, quality=1, codec=tic)
    dec_only = pipeline.encode_image(rgb, quality=1, codec=tic.bound(pipeline.load_adapter(
        tic, "semseg", name="ps-seg-dec")))
    both = pipeline.encode_image(rgb, quality=1, codec=tic, task="semseg", tasknet=net)
    assert payloads(dec_only) == payloads(recon) and payloads(both) != payloads(recon)


def test_a_file_decodes_to_the_in_memory_model_and_names_its_prompt_set(zoo_dir):
    import bitstream
    import torch

    from icmcodec.methods.transtic.model import TransTIC

    rgb = picture(128, 192)  # a multiple of 64: the trainable model needs no padding
    data = pipeline.encode_image(rgb, quality=1, model="test-tiny-transtic-0", task="semseg", device="cpu")
    hd = bitstream.unpack(data).header
    ps = pipeline.load_adapter(pipeline.load_codec("test-tiny-transtic-0", device="cpu"), "semseg")
    assert hd.adapter_hash == ps.hash and hd.task == bitstream.TaskTag.SEMSEG
    res = pipeline.decode_bytes(data, device="cpu")
    net = pipeline.load_tasknet("semseg", "tiny-semseg", device="cpu")
    assert res.tasknet.hash == net.hash and np.array_equal(res.output, net.predict([res.rgb])[0])
    # the coding-time transforms and prompts are the trainable networks' (export, FixedGDN, loading)
    tic = tiny_transtic_model(0)
    model = TransTIC(tic.cfg, tic)
    model.generator.load_state_dict(ps.generator.state_dict())
    model.task_prompts.load_state_dict(ps.task_prompts.state_dict())
    codec = pipeline.load_codec("test-tiny-transtic-0", device="cpu")
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = tic.g_a(x, model.generator(x))
        torch.testing.assert_close(codec.g_a(x, ps.generator(x)), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(codec.g_s(y, ps.task_prompts.per_block()),
                                   tic.g_s(y, model.task_prompts.per_block()), rtol=1e-5, atol=1e-5)


def test_a_prompt_set_for_another_base_is_refused(zoo_dir):
    other = pipeline.load_codec("test-tiny-transtic-0-identity", device="cpu")
    from icmcodec import zoo

    entry = zoo.find("ps-seg", kind="adapter")
    config, state, h = zoo.load_state(entry)
    with pytest.raises(ValueError, match="made for base"):
        other.load_adapter(config, state, h)
    with pytest.raises(pipeline.UsageError, match="no adapter for task semseg"):
        pipeline.encode_image(picture(), quality=1, codec=other, task="semseg")


def test_tiled_coding_with_prompts_matches_one_whole_run(zoo_dir):
    whole = pipeline.load_codec("test-tiny-transtic-0", device="cpu")
    ps = pipeline.load_adapter(whole, "semseg")
    small = whole.bound(ps)
    small.tiling = Tiling(analysis=64, hyper_analysis=4, hyper_synthesis=2, synthesis=4,
                          analysis_margin=whole.tiling.analysis_margin, analysis_align=whole.tiling.analysis_align)
    whole = whole.bound(ps)
    rgb = picture(192, 256, seed=4)
    assert max(rgb.shape) > small.tiling.analysis  # really tiled
    a, b = whole.encode(rgb, 1.25), small.encode(rgb, 1.25)
    np.testing.assert_array_equal(a["z_sym"], b["z_sym"])
    assert (a["y_sym"] != b["y_sym"]).mean() < 1e-3
    data = pipeline.encode_image(rgb, quality=1.25, codec=whole)
    import bitstream

    hd = bitstream.unpack(data).header
    r1 = whole.decode_chunks(hd, bitstream.unpack(data).chunks).astype(int)
    r2 = small.decode_chunks(hd, bitstream.unpack(data).chunks).astype(int)
    assert np.abs(r1 - r2).max() <= 1 and (r1 != r2).mean() < 1e-3


def test_prompt_training_runs_resumes_and_exports_a_working_set(zoo_dir, tmp_path):
    from PIL import Image

    from icmcodec.methods.transtic import train

    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.fromarray(picture(80, 96, seed=10 + i)).save(data / f"{i}.png")
    run = tmp_path / "run"
    common = ["--run", str(run), "--threads", "1"]
    train.main(common + ["--base", "test-tiny-transtic-0", "--task", "semseg", "--task-model", "tiny-semseg",
                         "--data", str(data), "--steps", "2", "--batch", "2", "--crop", "64", "--ckpt-every", "1"])
    first = torch.load(run / "last.pt", weights_only=False)
    assert first["step"] == 2 and first["config"]["tasknet_hash"] == \
        pipeline.load_tasknet("semseg", "tiny-semseg", device="cpu").hash.hex()
    train.main(common + ["--resume", "--steps", "3"])
    ck = torch.load(run / "last.pt", weights_only=False)
    assert ck["step"] == 3
    moved = [k for k in ck["prompts"] if not torch.equal(ck["prompts"][k], first["prompts"][k])]
    assert moved  # the prompts learn
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,bpp,distance")
    out = zoo_dir / "trained"
    train.main(["--run", str(run), "--export", str(out), "--name", "tt-trained"])
    pipeline._load_adapter.cache_clear()
    codec = pipeline.load_codec("test-tiny-transtic-0", device="cpu")
    ps = pipeline.load_adapter(codec, "semseg", name="tt-trained")
    data_b = pipeline.encode_image(picture(), quality=1, codec=codec.bound(ps))
    assert pipeline.decode_bytes(data_b, codec=codec.bound(ps)).rgb.shape == (64, 96, 3)


def test_the_base_trains_from_a_hyperprior_through_the_shared_loop(tmp_path):
    """``icmcodec.train --method transtic --init HYPERPRIOR``: the hyperprior's tensors land
    in the renumbered layers (the warm start is the hyperprior), then training moves the blocks."""
    import subprocess
    import sys

    from PIL import Image

    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(picture(64, 64)).save(data / "a.png")
    hp_dir = write_tiny_model(tmp_path / "hp")
    run = tmp_path / "run"
    arch = json.dumps({"window": 4, "depth": 2, "heads": 2, "prompt_tokens": 4, "generator_width": 8})
    p = subprocess.run([sys.executable, "-m", "icmcodec.train", "--run", str(run), "--method", "transtic", "--init",
                        str(hp_dir), "--data", str(data), "--batch", "1", "--crop", "64", "--steps", "1",
                        "--threads", "1", "--config", arch], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    ck = torch.load(run / "last.pt", weights_only=False)
    assert ck["method"] == "transtic" and ck["config"]["layout"] == "hybrid"
    from icmcodec.methods.hyperprior.tiny import tiny_float_model

    hp = tiny_float_model(0).state_dict()
    # hp-base's conv after its second GDN (g_a.4) is the hybrid's g_a.5 (a block sits at 4)
    assert torch.allclose(ck["model"]["g_a.5.weight"], hp["g_a.4.weight"], atol=1e-2)
    assert "g_a.4.layers.0.attn.qkv.weight" in ck["model"]


def test_a_missing_prompt_set_is_one_clear_line(zoo_dir, tmp_path, monkeypatch):
    import shutil

    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    monkeypatch.chdir(tmp_path)
    Image.fromarray(picture()).save(tmp_path / "a.png")
    run = lambda *a: CliRunner().invoke(main, list(map(str, a)))  # noqa: E731
    r = run("encode", "a.png", "--method", "transtic", "--model", "test-tiny-transtic-0", "--task", "semseg",
            "-o", "s.icm")
    assert r.exit_code == 0, r.output
    shutil.rmtree(zoo_dir / "ps-seg")
    shutil.rmtree(zoo_dir / "ps-seg-dec")
    pipeline._load_adapter.cache_clear()
    r = run("decode", "s.icm")
    assert r.exit_code == 2 and "adapter" in r.output and "not installed" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.glob("s.semseg*"))
    r = run("encode", "a.png", "--method", "transtic", "--model", "test-tiny-transtic-0", "--task", "semseg",
            "-o", "t.icm")
    assert r.exit_code == 2 and "no adapter for task semseg" in r.output


def test_the_benchmark_scores_tic_without_prompts_and_with_its_set(zoo_dir, tmp_path):
    """ra.py --adapter none: the bare base's pictures fed to the network (the paper's
    'TIC without prompts'); its rates are those of plain recon files of the same pictures."""
    from PIL import Image

    from icmcodec.bench import ra

    root = tmp_path / "cv"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(2):
            Image.fromarray(picture(64, 96, i)).save(root / split / f"f{i}.png")
            Image.fromarray(np.random.default_rng(i).integers(0, 12, (64, 96)).astype(np.uint8)).save(
                root / f"{split}annot" / f"f{i}.png")
    common = [str(root), "--task", "semseg", "--task-model", "tiny-semseg", "--model", "test-tiny-transtic-0",
              "--anchors", "none", "--qualities", "0,1"]
    ra.main(common + ["--adapter", "none", "--out", str(tmp_path / "bare")])
    bare = json.loads((tmp_path / "bare" / "ra.json").read_text())["curves"]["icm-test-tiny-transtic-0+none"]
    tic = pipeline.load_codec("test-tiny-transtic-0", device="cpu")
    for p, q in zip(bare, (0.0, 1.0)):
        sizes = [len(pipeline.encode_image(picture(64, 96, i), quality=q, codec=tic)) for i in range(2)]
        assert p["bpp"] == pytest.approx(np.mean([8 * s / (64 * 96) for s in sizes]))


def test_the_fully_fine_tuned_upper_bound_trains_every_tensor_on_the_task_loss(zoo_dir, tmp_path):
    """``icmcodec.train --task T --init TIC``: the distortion is the task network's feature
    distance; the transforms and the hyper synthesis all move, and the export is a recon
    model that codes (the "TIC fully fine-tuned per task" curve)."""
    from PIL import Image

    from icmcodec import train as train_mod

    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(picture(64, 64)).save(data / "a.png")
    run = tmp_path / "run"
    common = ["--run", str(run), "--method", "transtic", "--init", str(zoo_dir / "tt"), "--data", str(data),
              "--batch", "1", "--crop", "64", "--threads", "1", "--task", "semseg", "--task-model", "tiny-semseg"]
    with pytest.raises(SystemExit, match="--task-lambdas: 1 values"):
        train_mod.main(common + ["--steps", "1", "--task-lambdas", "1"])
    train_mod.main(common + ["--steps", "2", "--lr", "1e-2"])
    ck = torch.load(run / "last.pt", weights_only=False)
    start = train_mod.method_classes("transtic")[0](train_mod.method_classes("transtic")[1].from_dict(ck["config"]))
    train_mod.init_from(start, str(zoo_dir / "tt"))
    before = start.state_dict()
    for part in ("g_a.", "g_s.", "h_s."):
        assert any(not torch.equal(v, before[k]) for k, v in ck["model"].items() if k.startswith(part)), part
    saved = json.loads((run / "train_config.json").read_text())["args"]
    assert saved["task"] == "semseg" and saved["task_model"] == "tiny-semseg"
    import subprocess
    import sys

    out = zoo_dir / "tt-ft"
    export = [sys.executable, "-m", "icmcodec.export", str(run / "last.pt"), str(out), "--name", "tt-ft"]
    bad = subprocess.run(export + ["--quality-range=-3,9"], capture_output=True, text=True)
    assert bad.returncode != 0 and "quality range -3..9" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()
    subprocess.run(export + ["--quality-range=-3,1"], check=True, capture_output=True)
    assert json.loads((out / "config.json").read_text())["quality_range"] == [-3.0, 1.0]
    codec = pipeline.load_codec(str(out), device="cpu")
    assert pipeline.decode_bytes(pipeline.encode_image(picture(), quality=1, codec=codec), codec=codec).rgb.shape \
        == (64, 96, 3)
