"""MPA: inert paths at rho 0, one file for every task, the ratio rule, base checks,
symbols across threads and processes, and the CLI's --strength and info."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import bitstream
from cli.main import main
from icmcodec import pipeline, zoo
from icmcodec.methods.mpa import paths as mp
from icmcodec.methods.mpa.tiny import write_tiny_mpa_adapter, write_tiny_mpa_model
from conftest import write_tiny_tasknet

TINY = ("--method", "mpa", "--model", "mpa")


@pytest.fixture()
def env(tmp_path, monkeypatch):
    models = tmp_path / "models"
    write_tiny_mpa_model(models / "mpa")
    for task in ("semseg", "boundary"):
        write_tiny_tasknet(models / f"tiny-{task}", task, name=f"tiny-{task}")
    write_tiny_mpa_adapter(models / "mpa-semseg", models / "mpa", models / "tiny-semseg", "semseg")
    monkeypatch.setenv("ICM_MODEL_PATH", str(models))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(4)
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(work / "a.png")
    return work


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def rgb_of(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_at_rho_0_the_wrapped_mlp_is_the_main_path_exactly():
    torch.manual_seed(0)
    main_mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
    path = mp.TaskPath(16, 4)
    for p in path.parameters():
        torch.nn.init.normal_(p)
    t = torch.randn(2, 5, 7, 16)
    with torch.no_grad():
        assert torch.equal(mp.MultiPathMlp(main_mlp, path, 0.0)(t), main_mlp(t))
        # at rho 1 every token takes the side path: main + side
        torch.testing.assert_close(mp.MultiPathMlp(main_mlp, path, 1.0)(t), main_mlp(t) + path.side(t))


def test_masks_are_per_token_and_training_uses_the_coding_time_choice():
    torch.manual_seed(1)
    path = mp.TaskPath(8, 4)
    torch.nn.init.normal_(path.predictor.fc2.weight)
    wrapped = mp.MultiPathMlp(torch.nn.Identity(), path, 0.5)
    t = torch.randn(4, 64, 64, 8)
    with torch.no_grad():
        wrapped(t)
        whole = wrapped.last_mask.clone()
        # the choice depends on each token alone: a token's choice is the same in any crop (tiles)
        wrapped(t[:, 10:30, 5:40])
        assert torch.equal(wrapped.last_mask, whole[:, 10:30, 5:40])
    out = wrapped(t)  # training: the same hard choice, the sigmoid's gradient straight through
    assert torch.equal(wrapped.last_mask.detach().bool(), whole)
    mp.ratio_loss(wrapped, 0.5).backward()
    assert path.predictor.fc2.weight.grad is not None and out.shape == t.shape


def test_the_copy_with_paths_shares_the_base_weights_and_leaves_it_untouched(env, tmp_path):
    config, state, h = zoo.load_state(zoo.entry_at(tmp_path / "models" / "mpa"))
    from icmcodec.methods.mpa.codec import MpaCodec

    codec = MpaCodec(config, state, h)
    names = mp.mlp_names(codec.g_s)
    assert names and all(n.endswith(".mlp") for n in names)
    ps = mp.PathSet(names, codec.arch.N, 4)
    g = mp.with_paths(codec.g_s, ps, 0.5)
    assert len(mp.wrapped(g)) == len(names) and not mp.wrapped(codec.g_s)
    base = dict(codec.g_s.named_parameters())
    for k, v in g.named_parameters():
        if ".path." not in k:
            assert v is base[k.replace(".main.", ".")]


def test_one_file_serves_every_task_with_an_installed_set_and_strength_0_is_the_base(env, tmp_path):
    assert icm("encode", "a.png", *TINY, "--quality", "1", "-o", "r.icm").exit_code == 0
    r = icm("encode", "a.png", *TINY, "--task", "semseg", "--quality", "1", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    recon, seg = (bitstream.unpack((env / f).read_bytes()) for f in ("r.icm", "s.icm"))
    # --task changes the header's default only: the coded stream is the same
    assert [c.data for c in recon.chunks] == [c.data for c in seg.chunks]
    assert seg.header.task == bitstream.TaskTag.SEMSEG and seg.header.adapter_hash != bytes(16)
    assert recon.header.adapter_hash == bytes(16)
    # info lists what this installation can decode the file to
    info = json.loads(icm("info", "r.icm", "--json").output)
    assert info["tasks"] == ["recon", "semseg"]
    # the recon file decodes to semseg through the installed set, the same output as the semseg file
    assert icm("decode", "r.icm", "--task", "semseg", "--out-dir", "a").exit_code == 0
    assert icm("decode", "s.icm", "--out-dir", "b").exit_code == 0
    assert np.array_equal(rgb_of(env / "a" / "r.semseg.png"), rgb_of(env / "b" / "s.semseg.png"))
    # a set installed after the file was made serves it too
    r = icm("decode", "r.icm", "--task", "boundary", "-o", "x.png")
    assert r.exit_code == 2 and "it can give recon, semseg, not boundary" in r.output
    models = tmp_path / "models"
    write_tiny_mpa_adapter(models / "mpa-boundary", models / "mpa", models / "tiny-boundary", "boundary")
    assert json.loads(icm("info", "s.icm", "--json").output)["tasks"] == ["semseg", "recon", "boundary"]
    r = icm("decode", "s.icm", "--task", "boundary", "-o", "x.boundary.png")
    assert r.exit_code == 0, r.output
    # strength 0: the base's picture byte for byte (TIC alone decoding the same chunks)
    base = pipeline.load_codec(str(models / "mpa-base"), device="cpu")
    hd = seg.header
    base_rgb = base.decode(seg.chunks[0].data, seg.chunks[1].data, (hd.coded_height, hd.coded_width),
                           (hd.height, hd.width), hd.quality)
    assert np.array_equal(pipeline.decode_bytes(bytes((env / "s.icm").read_bytes()), task="recon").rgb, base_rgb)
    codec = pipeline.codec_for(hd, "cpu").for_task("semseg", 0.0)
    assert np.array_equal(codec.decode_chunks(hd, seg.chunks), base_rgb)
    # and a real strength changes the picture the network sees
    moved = pipeline.codec_for(hd, "cpu")
    moved = moved.bound(pipeline.load_adapter(moved, "semseg")).for_task("semseg", 0.8)
    assert not np.array_equal(moved.decode_chunks(hd, seg.chunks), base_rgb)


def test_strength_is_checked_and_only_for_methods_that_have_one(env):
    assert icm("encode", "a.png", *TINY, "--task", "semseg", "-o", "s.icm").exit_code == 0
    r = icm("decode", "s.icm", "--strength", "0.7", "--out-dir", "o")
    assert r.exit_code == 0, r.output
    for bad, why in (("1.5", "not in the range"), ("-0.1", "not in the range")):
        r = icm("decode", "s.icm", "--strength", bad, "--out-dir", "o")
        assert r.exit_code == 2 and why in r.output
    r = icm("decode", "s.icm", "--task", "recon", "--strength", "0.5", "-o", "x.png")
    assert r.exit_code == 2 and "--strength is for machine tasks" in r.output and not (env / "x.png").exists()


def test_a_path_set_for_another_mpa_model_is_refused_with_one_line(env, tmp_path):
    models = tmp_path / "models"
    write_tiny_mpa_model(tmp_path / "other" / "mpa-1", seed=1)
    write_tiny_mpa_adapter(models / "mpa-semseg-1", tmp_path / "other" / "mpa-1", models / "tiny-semseg", "semseg")
    cfg = json.loads((models / "mpa-semseg-1" / "config.json").read_text())
    codec = pipeline.load_codec(str(models / "mpa"), device="cpu")
    with pytest.raises(pipeline.UsageError, match=r"was made for base [0-9a-f]{12}, not for"):
        pipeline.load_adapter(codec, "semseg", name=cfg["name"])
    # an MPA model whose base is missing: one line naming it, for encode and decode
    assert icm("encode", "a.png", *TINY, "-o", "x.icm").exit_code == 0
    write_tiny_mpa_model(models / "mpa-2", seed=2)
    import shutil

    shutil.rmtree(models / "mpa-2-base")
    for args in (("encode", "a.png", "--method", "mpa", "--model", "mpa-2", "-o", "y.icm"),):
        r = icm(*args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert "runs on base mpa-2-base" in r.output and "not installed" in r.output
    assert not (env / "y.icm").exists()


DECODE = """
import sys, torch, numpy as np, bitstream
torch.set_num_threads(int(sys.argv[2]))
from icmcodec import pipeline
c = bitstream.unpack(open(sys.argv[1], 'rb').read())
codec = pipeline.codec_for(c.header, 'cpu')
z, y = codec.decode_symbols(c.chunks[0].data, c.chunks[1].data, (c.header.coded_height, c.header.coded_width),
                            c.header.quality)[:2]
sys.stdout.write(str(int(np.abs(y).sum())) + ' ' + np.ascontiguousarray(y).tobytes().hex()[:100000])
"""


def test_symbols_are_the_same_across_threads_and_processes(env):
    assert icm("encode", "a.png", *TINY, "--task", "semseg", "--quality", "1.5", "-o", "b.icm").exit_code == 0
    outs = {subprocess.run([sys.executable, "-c", DECODE, str(env / "b.icm"), str(n)], capture_output=True,
                           text=True, env=dict(os.environ), check=True).stdout for n in (1, 2)}
    assert len(outs) == 1
    c = bitstream.unpack((env / "b.icm").read_bytes())
    codec = pipeline.codec_for(c.header, "cpu")
    enc = codec.code(codec.analyse(rgb_of(env / "a.png")), c.header.quality)
    assert outs == {str(int(np.abs(enc.symbols["y"]).sum())) + " "
                    + np.ascontiguousarray(enc.symbols["y"]).tobytes().hex()[:100000]}
