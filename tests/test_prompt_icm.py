"""Prompt-ICM on tiny seeded models: the importance map steers the bits, files round-trip,
adapters are checked, symbols are exact, the backbone cut is the backbone."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import bitstream
from icmcodec import pipeline
from icmcodec.methods.prompt_icm.model import TaskDecoder, random_maps
from icmcodec.methods.prompt_icm.staged import Staged
from icmcodec.tasks.backbone import TINY_PVT
from icmcodec.methods.prompt_icm.tiny import write_tiny_prompt_icm_model, write_tiny_prompt_icm_adapter

BASE = "test-tiny-prompt-icm-0"


@pytest.fixture()
def models(tmp_path, monkeypatch, tasknet_dir):
    root = tmp_path / "models"
    write_tiny_prompt_icm_model(root / BASE)
    nets = {t: tasknet_dir(t, **({"labels": ["a", "b", "c"]} if t == "cls" else {})) for t in ("semseg", "cls")}
    for t, net in nets.items():
        write_tiny_prompt_icm_adapter(root / f"picm-{t}", root / BASE, net, t)
    monkeypatch.setenv("ICM_MODEL_PATH", str(root))
    return root


def noise(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def quadrants(b):
    h, w = b.shape[0] // 2, b.shape[1] // 2
    return np.array([b[:h, :w].sum(), b[:h, w:].sum(), b[h:, :w].sum(), b[h:, w:].sum()])


def test_a_uniform_map_spends_bits_uniformly_and_a_raised_region_spends_more(models):
    codec = pipeline.load_codec(BASE, device="cpu")
    rgb = noise(256, 256)
    side = 64  # the feature's grid (4x down)
    q2 = 2.0  # a map of mean 1 steers at 0.5 here: nothing is clipped at the top
    # uniform map: every quadrant of the latent within 10 % of the mean (a noise picture,
    # so content does not differ between regions)
    b = codec.bits_map(codec.analyse(rgb, importance=np.full((side, side), 0.5)), q2)
    q = quadrants(b)
    assert np.abs(q / q.mean() - 1).max() < 0.10, q
    # the right half raised: the right quadrants cost more than the left ones, and more
    # than the same quadrants under the uniform map (the map is relative importance: the
    # left half gives up what the right half gains)
    m = np.full((side, side), 0.5)
    m[:, side // 2:] = 1.0
    r = quadrants(codec.bits_map(codec.analyse(rgb, importance=m), q2))
    assert r[[1, 3]].min() > 1.05 * r[[0, 2]].max(), r
    assert (r[[1, 3]] > 1.03 * q[[1, 3]]).all() and (r[[0, 2]] < q[[0, 2]]).all()
    # the quality scales the map: fewer bits at a lower quality, more at a higher one
    an = codec.analyse(rgb, importance=m)
    assert codec.bits_map(an, 0.5).sum() < r.sum() < codec.bits_map(an, 4.0).sum()


def test_round_trip_through_files_for_each_task(models):
    codec = pipeline.load_codec(BASE, device="cpu")
    rgb = noise(40, 56)
    for task in ("semseg", "cls"):
        data = pipeline.encode_image(rgb, task=task, quality=2.5, codec=codec)
        hd = bitstream.unpack(data).header
        assert hd.method == bitstream.MethodId.PROMPT_ICM and hd.task.name.lower() == task
        out = pipeline.decode_bytes(data).output
        assert out.shape == ((40, 56) if task == "semseg" else (3,))
        # the file's output is the in-memory path's: features -> the set's decoder
        bound = codec.bound(pipeline.load_adapter(codec, task))
        f_hat = bound.decode_features(bitstream.unpack(data).chunks[0].data, bitstream.unpack(data).chunks[1].data,
                                      (hd.coded_height, hd.coded_width), hd.quality)
        np.testing.assert_array_equal(out, bound.adapter.finish(f_hat, (hd.coded_height, hd.coded_width), (40, 56)))


def test_recon_is_a_clear_error_and_a_file_without_a_set_is_refused(models):
    codec = pipeline.load_codec(BASE, device="cpu")
    with pytest.raises(pipeline.UsageError, match="does not code task recon"):
        pipeline.encode_image(noise(32, 32), task="recon", codec=codec)
    data = pipeline.encode_image(noise(32, 32), task="semseg", codec=codec)
    c = bitstream.unpack(data)
    with pytest.raises(pipeline.UsageError, match="it can give semseg, not recon"):
        pipeline.decode_bytes(data, task="recon")
    # a semseg file naming no prompt set breaks the spec (adapter_hash is zero only for recon)
    from icmcodec.bench.forge import set_field

    forged = set_field(data, "adapter_hash", bytes(16))
    with pytest.raises(bitstream.BitstreamError, match="must name its task network or adapter"):
        pipeline.decode_bytes(forged)


def test_an_artifact_for_another_base_is_refused(models, tasknet_dir):
    other = models / "other-base"
    write_tiny_prompt_icm_model(other, seed=3)
    write_tiny_prompt_icm_adapter(models / "picm-semseg-other", other, tasknet_dir("semseg"), "semseg")
    codec = pipeline.load_codec(BASE, device="cpu")
    with pytest.raises(pipeline.UsageError, match="was made for base"):
        pipeline.load_adapter(codec, "semseg", name="picm-semseg-other")


SYMBOLS = """
import sys, hashlib, torch
torch.set_num_threads(int(sys.argv[1]))
from icmcodec import pipeline
import bitstream
codec = pipeline.load_codec("test-tiny-prompt-icm-0", device="cpu")
c = bitstream.unpack(open(sys.argv[2], "rb").read())
z, y = codec.decode_symbols(c.chunks[0].data, c.chunks[1].data, (c.header.coded_height, c.header.coded_width),
                            c.header.quality)[:2]
out = pipeline.decode_bytes(open(sys.argv[2], "rb").read()).output
print(hashlib.sha256(z.tobytes() + y.tobytes()).hexdigest(), out.shape)
"""


def test_symbols_are_exact_across_thread_counts_and_processes(models, tmp_path):
    # one file (the encoder runs in float: another thread count may write other bytes,
    # each a valid file) decodes to the same symbols in every process and thread count
    codec = pipeline.load_codec(BASE, device="cpu")
    rgb = (np.random.default_rng(1).random((72, 100, 3)) * 255).astype(np.uint8)
    path = tmp_path / "x.icm"
    path.write_bytes(pipeline.encode_image(rgb, task="semseg", quality=3, codec=codec))
    runs = [subprocess.run([sys.executable, "-c", SYMBOLS, str(t), str(path)], capture_output=True, text=True,
                           env={**os.environ}, check=True).stdout.split() for t in (1, 2, 1)]
    assert runs[0] == runs[1] == runs[2]


def test_staged_backbone_is_the_backbone_and_resumes_from_stage_1():
    from icmcodec.tasks.backbone import create_backbone

    torch.manual_seed(0)
    for name, args in (("icm_pvt_nano", TINY_PVT), ("tf_efficientnet_lite0", {"out_indices": (1, 2, 3, 4)})):
        bb = create_backbone(name, **args).eval()
        st = Staged(bb)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            ref = bb(x)
            whole = st(x)
            f = st.stem(x)
            resumed = st.rest(f)
        assert len(whole) == len(ref) and all(torch.equal(a, b) for a, b in zip(whole, ref))
        assert len(resumed) == len(ref) and all(torch.equal(a, b) for a, b in zip(resumed, ref))
        assert ref[0].shape[-1] == 16  # the cut is at 4x


def test_prompts_start_as_the_identity_and_only_they_and_the_head_train(tasknet_dir):
    from icmcodec.tasks.predict import TaskModel

    tm = TaskModel.load(tasknet_dir("semseg"))
    dec = TaskDecoder(tm.net)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        xn = (x - tm.net.mean) / tm.net.std
        f = Staged(tm.net.backbone).stem(xn)
        np.testing.assert_allclose(dec(f, (64, 64)).numpy(), tm.net(x).numpy(), rtol=1e-5, atol=1e-5)
    trainable = {n for n, p in dec.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("prompts.", "head.")) for n in trainable)
    assert set(dec.adapter_state()) == {k for k in dec.state_dict() if not k.startswith("staged.")}


def test_random_maps_are_of_the_four_kinds_and_in_range():
    maps = random_maps(64, 24, 32, np.random.default_rng(0))
    assert maps.shape == (64, 1, 24, 32) and maps.min() >= 0 and maps.max() <= 1
    flat = maps.reshape(64, -1)
    uniform = flat.std(1) < 1e-6
    assert 0 < uniform.sum() < 64  # some uniform maps, and some that vary


def test_ablation_sets_a_constant_map_and_fine_tuned_stages(models, tasknet_dir):
    from safetensors.numpy import load_file

    net = models.parent / "models" / "tiny-semseg"
    write_tiny_prompt_icm_adapter(models / "picm-uniform", models / BASE, net, "semseg", uniform=True)
    write_tiny_prompt_icm_adapter(models / "picm-finetuned", models / BASE, net, "semseg", finetune=True)
    assert not any(k.startswith("selector.") for k in load_file(models / "picm-uniform" / "model.safetensors"))
    codec = pipeline.load_codec(BASE, device="cpu")
    rgb = noise(64, 64)
    uni = codec.bound(pipeline.load_adapter(codec, "semseg", name="picm-uniform"))
    assert torch.equal(uni.analyse(rgb).m, torch.ones((1, 1, 16, 16)))
    tasknet = pipeline.load_tasknet("semseg", device="cpu")
    before = {k: v.clone() for k, v in tasknet.net.state_dict().items()}
    ft = codec.bound(pipeline.load_adapter(codec, "semseg", name="picm-finetuned"))
    data = pipeline.encode_image(rgb, task="semseg", codec=ft)
    assert pipeline.decode_bytes(data).output.shape == (64, 64)
    # the fine-tuned stages are the set's own copy: the installed task network is untouched
    assert all(torch.equal(before[k], v) for k, v in tasknet.net.state_dict().items())
    assert any(k.startswith("decoder.staged.") for k in load_file(models / "picm-finetuned" / "model.safetensors"))


def test_a_learned_contrast_flattens_or_sharpens_the_map_per_quality(models):
    net = models.parent / "models" / "tiny-semseg"
    write_tiny_prompt_icm_adapter(models / "picm-plain", models / BASE, net, "semseg")
    write_tiny_prompt_icm_adapter(models / "picm-flat", models / BASE, net, "semseg", contrast=(-40.0, 0.0))  # gamma ~ 0
    write_tiny_prompt_icm_adapter(models / "picm-sharp", models / BASE, net, "semseg", contrast=(0.0, 8.0))  # softplus(2q)
    codec = pipeline.load_codec(BASE, device="cpu")
    rgb = noise(64, 64, seed=3)
    plain, flat, sharp = (codec.bound(pipeline.load_adapter(codec, "semseg", name=n)).analyse(rgb)
                          for n in ("picm-plain", "picm-flat", "picm-sharp"))
    assert torch.equal(flat.m, plain.m) and plain.m.std() > 0.01  # the same selector draws the same map
    ones = torch.ones_like(plain.m)
    assert torch.allclose(flat.at(2.0), ones, atol=1e-5)  # gamma -> 0: the constant map, at every quality
    assert torch.allclose(flat.at(-4.0), ones, atol=1e-5)
    # the same bits as a uniform manual prompt (within float noise of the map)
    uni = codec.bits_map(codec.analyse(rgb, importance=np.ones((16, 16))), 2.0).sum()
    assert abs(codec.bits_map(flat, 2.0).sum() - uni) <= 0.01 * uni
    # gamma(q) = softplus(2 q): flatter than the drawn map at low qualities, sharper at high ones
    assert sharp.at(-4.0).std() < plain.at(-4.0).std() < sharp.at(4.0).std()
    assert torch.equal(plain.at(-4.0), plain.m)  # a set without contrast: the map as drawn


def test_task_training_runs_resumes_and_exports_a_set_that_codes(models, tmp_path):
    from PIL import Image

    from icmcodec.methods.prompt_icm.train import main as train

    data = tmp_path / "data"
    for k, c in enumerate(("a", "b", "c")):
        (data / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(noise(40 + 8 * i, 48, seed=10 * k + i)).save(data / "train" / c / f"{i}.png")
    run = tmp_path / "run"
    base = str(models / BASE)
    args = ["task", "--base", base, "--task", "cls", "--tasknet", "tiny-cls", "--data", str(data), "--run", str(run),
            "--batch", "2", "--crop", "32", "--save-every", "1"]
    with pytest.raises(SystemExit, match="takes 24 channels at 4x"):  # the shipped Lite0 network: not this base's
        train(args[:5] + args[7:] + ["--steps", "1"])
    train(args + ["--steps", "1"])
    train(["task", "--run", str(run), "--resume", "--steps", "2"])  # continues from step 1
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2
    # whole pictures through the decoder's feature view, started from that run
    train(args[:-6] + ["--run", str(tmp_path / "views"), "--views", "--init", str(run / "last.pt"), "--batch", "2",
                       "--crop", "32", "--steps", "1"])
    train(["task", "--run", str(tmp_path / "views"), "--export", str(models / "trained-cls"), "--name", "trained-cls"])
    config = json.loads((models / "trained-cls" / "config.json").read_text())
    assert not config["contrast"] and config["trained_qualities"] == [-4.0, 4.0] and config["alpha_slope"] == 1.0
    with pytest.raises(SystemExit, match="--qualities"):
        train(args + ["--run", str(tmp_path / "bad"), "--qualities", "0,5", "--steps", "1"])
    codec = pipeline.load_codec(BASE, device="cpu")
    bound = codec.bound(pipeline.load_adapter(codec, "cls", name="trained-cls"))
    out = pipeline.decode_bytes(pipeline.encode_image(noise(40, 48), task="cls", codec=bound)).output
    assert out.shape == (3,) and abs(out.sum() - 1) < 1e-6
