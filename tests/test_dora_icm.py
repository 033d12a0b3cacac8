"""DoRA-ICM: the adapters, the exact two-pass coding, the file path and the backbone check."""
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
from icmcodec import pipeline
from icmcodec.methods.dora_icm import dora
from icmcodec.methods.dora_icm.tiny import tiny_dora_model, write_tiny_dora_model


def test_a_fresh_adapter_is_the_frozen_layer():
    torch.manual_seed(0)
    conv, lin = torch.nn.Conv2d(12, 20, 1), torch.nn.Linear(12, 20)
    x = torch.randn(2, 12, 5, 7)
    for base, wrap, inp in ((conv, dora.DoraConv1x1, x), (lin, dora.DoraLinear, x.permute(0, 2, 3, 1))):
        ref = base(inp)
        ad = wrap(base, rank=4)
        torch.testing.assert_close(ad(inp), ref, rtol=0, atol=1e-5)  # B = 0: W' = ||W0|| W0 / ||W0||
        assert not base.weight.requires_grad
        assert {n for n, p in ad.named_parameters() if p.requires_grad} == {
            "lora_A.weight", "lora_B.weight", "lora_magnitude_vector"}


def test_merged_adapters_equal_the_unmerged_ones():
    model = tiny_dora_model(0)  # non-zero B and magnitudes
    x = torch.rand(1, 3, 64, 96)
    bb = model.encoder.backbone
    with torch.no_grad():
        before = bb((x - 0.5) / 0.5)[-1]
        assert any(isinstance(m, dora.DoraConv1x1) for m in bb.modules())
        dora.merge(bb)
        assert not any(isinstance(m, dora.DoraConv1x1) for m in bb.modules())
        after = bb((x - 0.5) / 0.5)[-1]
    # float32 re-association only (the merged weight is the one the wrapper computes)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_adapter_state_is_peft_named_and_small():
    model = tiny_dora_model(0)
    state = dora.adapter_state(model.encoder.backbone)
    assert state and all(k.endswith((".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector")) for k in state)
    # only the groups at 1/16 are adapted (adapt_from = 3)
    assert all(k.startswith(("blocks.3.", "blocks.4.")) for k in state)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    write_tiny_dora_model(tmp_path / "models" / "tiny-dora")
    monkeypatch.setenv("ICM_MODEL_PATH", str(tmp_path / "models"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(work / "a.png")
    return work


TINY = ("--method", "dora-icm", "--model", "test-tiny-dora-0")


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_cli_file_decodes_to_the_in_memory_output(env):
    r = icm("encode", "a.png", *TINY, "--task", "semseg", "--quality", "1", "-o", "a.icm")
    assert r.exit_code == 0, r.output
    data = (env / "a.icm").read_bytes()
    c = bitstream.unpack(data)
    assert c.header.method == bitstream.MethodId.DORA_ICM and c.header.adapter_hash == c.header.model_hash
    assert [ch.type for ch in c.chunks] == [bitstream.ChunkType.HYPER, bitstream.ChunkType.LATENT,
                                            bitstream.ChunkType.LATENT]
    assert icm("decode", "a.icm", "--out-dir", "out").exit_code == 0
    mask = np.asarray(Image.open(env / "out" / "a.semseg.png"))
    legend = json.loads((env / "out" / "a.semseg.json").read_text())
    assert legend["model"]["hash"] == c.header.model_hash.hex()
    codec = pipeline.load_codec("test-tiny-dora-0", device="cpu", task="semseg")
    rgb = np.asarray(Image.open(env / "a.png"))
    again = pipeline.encode_image(rgb, task="semseg", quality=1, codec=codec)
    res = pipeline.decode_bytes(again, codec=codec)
    assert res.output.shape == (70, 90)
    np.testing.assert_array_equal(res.output, mask)
    np.testing.assert_array_equal(pipeline.decode_bytes(data).output, mask)


def test_a_dora_file_gives_its_task_only_and_other_tasks_are_refused(env):
    assert icm("encode", "a.png", *TINY, "--task", "semseg", "-o", "a.icm").exit_code == 0
    for task in ("recon", "boundary"):
        r = icm("decode", "a.icm", "--task", task, "-o", "x.png")
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
        assert f"coded for semseg; it can give semseg, not {task}" in r.output
    r = icm("encode", "a.png", "--method", "dora-icm", "-o", "b.icm")  # recon
    assert r.exit_code == 2 and "does not code task recon" in r.output
    r = icm("encode", "a.png", *TINY, "--task", "boundary", "-o", "b.icm")
    assert r.exit_code == 2 and "codes semseg, not boundary" in r.output


def test_a_set_for_another_backbone_is_refused_with_one_line(env, tmp_path):
    cfg_path = tmp_path / "models" / "tiny-dora" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["backbone"]["hash"] = "0" * 32
    cfg_path.write_text(json.dumps(cfg))
    r = icm("encode", "a.png", *TINY, "--task", "semseg", "-o", "a.icm")
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "trained on backbone 000000000000" in r.output
    assert not (env / "a.icm").exists()


def test_a_forged_adapter_hash_is_refused(env):
    from icmcodec.bench.forge import set_field

    assert icm("encode", "a.png", *TINY, "--task", "semseg", "-o", "a.icm").exit_code == 0
    forged = set_field((env / "a.icm").read_bytes(), "adapter_hash", bytes(range(1, 17)))
    with pytest.raises((bitstream.UnknownValueError, pipeline.UsageError), match="must repeat its model_hash"):
        pipeline.decode_bytes(forged)


DECODE = """
import sys, torch, numpy as np, bitstream
torch.set_num_threads(int(sys.argv[2]))
from icmcodec import pipeline
data = open(sys.argv[1], 'rb').read()
c = bitstream.unpack(data)
codec = pipeline.codec_for(c.header, 'cpu')
z, y, y_hat, lg = codec.decode_symbols(c.chunks, (c.header.coded_height, c.header.coded_width), c.header.quality)
sys.stdout.write(np.ascontiguousarray(y).tobytes().hex()[:200000] + ' ' + str(int(np.abs(y).sum())))
"""


def test_both_passes_decode_to_the_same_symbols_across_threads_and_processes(env):
    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((150, 200, 3)) * 255).astype(np.uint8)).save(env / "b.png")
    assert icm("encode", "b.png", *TINY, "--task", "semseg", "--quality", "2",
               "-o", "b.icm").exit_code == 0
    outs = {subprocess.run([sys.executable, "-c", DECODE, str(env / "b.icm"), str(n)], capture_output=True,
                           text=True, env=dict(os.environ), check=True).stdout for n in (1, 2)}
    assert len(outs) == 1
    data = (env / "b.icm").read_bytes()
    c = bitstream.unpack(data)
    codec = pipeline.codec_for(c.header, "cpu")
    enc = codec.code(codec.analyse(np.asarray(Image.open(env / "b.png"))), c.header.quality)
    y = codec.decode_symbols(c.chunks, enc.coded_size, c.header.quality)[1]
    np.testing.assert_array_equal(y, enc.symbols["y"])
    assert outs == {np.ascontiguousarray(y).tobytes().hex()[:200000] + " " + str(int(np.abs(y).sum()))}
    # each pass is its own chunk: both carry symbols (neither is empty framing only)
    assert all(len(ch.data) > 0 for ch in c.chunks)


def test_a_user_brought_vit_backbone_codes_through_the_cli(tmp_path, monkeypatch):
    """DoRA on a (random, small) EVA-02's q/k/v: the same package, a config naming the backbone."""
    from icmcodec.methods.dora_icm.tiny import TINY_EVA

    folder = write_tiny_dora_model(tmp_path / "models" / "eva", seed=1, **TINY_EVA)
    assert json.loads((folder / "config.json").read_text())["arch"]["targets"] == "qkv"
    monkeypatch.setenv("ICM_MODEL_PATH", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    Image.fromarray((np.random.default_rng(1).random((64, 100, 3)) * 255).astype(np.uint8)).save("v.png")
    r = icm("encode", "v.png", "--method", "dora-icm", "--model", "test-tiny-dora-1-eva02_tiny_patch14_224",
            "--task", "semseg", "-o", "v.icm")
    assert r.exit_code == 0, r.output
    assert icm("decode", "v.icm", "-o", "v.semseg.png").exit_code == 0
    assert np.asarray(Image.open(tmp_path / "v.semseg.png")).shape == (64, 100)
