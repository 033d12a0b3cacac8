"""The model that ships inside the package: present, loadable, and a working codec."""
import json

import numpy as np
import pytest

from icmcodec import pipeline, zoo


def smooth_image(h=96, w=128):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    r = 128 + 100 * np.sin(3 * xx + 1) * np.cos(2 * yy)
    g = 128 + 90 * np.cos(4 * yy + xx)
    b = 60 + 150 * xx * yy
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def test_default_recon_model_ships_with_card():
    entry = zoo.find(task="recon")
    assert entry.path.parent == zoo.SHIPPED and entry.config["default"] is True
    assert (entry.path / "MODEL_CARD.md").is_file()
    assert entry.bytes < 20 * 2**20  # float16 kernels keep the default model small
    cfg = json.loads((entry.path / "config.json").read_text())
    assert cfg["method"] == "hyperprior" and cfg["task"] == "recon"


def test_one_default_per_task():
    defaults = {}
    for m in zoo.available():
        if m.path.parent == zoo.SHIPPED and m.config.get("default"):
            # a prompt set is the default for its task on its own base
            key = (m.kind, m.config["task"], m.config.get("base_hash"))
            assert key not in defaults, f"two defaults for {key}: {defaults.get(key)} and {m.name}"
            defaults[key] = m.name
    assert defaults[("codec", "recon", None)] == "hp-base"


@pytest.mark.parametrize("name", ["hp-base", "hp-small", "tic-hybrid"])
def test_shipped_model_codes_a_picture(name):
    # hp-small is no longer the default, but files made with it must keep decoding;
    # tic-hybrid is TransTIC's base, a picture codec on its own
    codec = pipeline.load_codec(name, device="cpu")
    lo, hi = codec.quality_range
    rgb = smooth_image()
    sizes, psnrs = [], []
    for q in (lo, hi):
        data = pipeline.encode_image(rgb, quality=q, codec=codec)
        out = pipeline.decode_bytes(data, codec=codec).rgb
        mse = np.mean((out.astype(float) - rgb) ** 2)
        sizes.append(len(data))
        psnrs.append(10 * np.log10(255**2 / mse))
    assert sizes[0] < sizes[1] and psnrs[0] < psnrs[1]
    assert psnrs[1] > 28  # a smooth picture at the highest quality


def test_shipped_task_networks_load_and_predict():
    from icmcodec.tasks.predict import TaskModel

    nets = [m for m in zoo.available() if m.kind == "tasknet" and m.path.parent == zoo.SHIPPED]
    assert {m.config["task"] for m in nets} >= {"cls"}
    rgb = smooth_image()[:48, :64]
    for m in nets:
        assert (m.path / "MODEL_CARD.md").is_file() and m.bytes < 8 * 2**20
        assert m.config["clean_metric"]["split"] == "val"
        net = TaskModel.load(m.path)
        out = net.predict([rgb])[0]
        if net.spec.kind == "dense":
            assert out.shape[:2] == rgb.shape[:2]
        else:
            assert out.shape == (len(net.labels),) and abs(out.sum() - 1) < 1e-6


def test_loading_a_codec_does_not_import_the_training_code():
    # compressai (training only) takes seconds to import; coding must not pay for it
    import subprocess
    import sys

    code = ("import sys; from icmcodec import pipeline; pipeline.load_codec(device='cpu'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'compressai' or m in ('icmcodec.export', 'icmcodec.methods.hyperprior.export', 'icmcodec.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _saliency_through_cli(tmp_path, monkeypatch, *encode_args):
    """Encode a made picture for saliency with ``encode_args``, decode it through the CLI:
    (the file's ``icm info``, the written map, the in-memory decode), checking that the map
    is an 8-bit PNG of the picture's size equal to the in-memory output."""
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    monkeypatch.chdir(tmp_path)
    Image.fromarray(smooth_image()).save("a.png")
    r = CliRunner().invoke(main, ["encode", "a.png", "--task", "saliency", *encode_args, "-o", "a.icm"])
    assert r.exit_code == 0, r.output
    info = CliRunner().invoke(main, ["info", "a.icm"]).output
    assert CliRunner().invoke(main, ["decode", "a.icm", "--out-dir", "out"]).exit_code == 0
    png = Image.open(tmp_path / "out" / "a.saliency.png")
    assert png.mode == "L" and png.size == (128, 96)
    res = pipeline.decode_bytes((tmp_path / "a.icm").read_bytes())
    assert np.array_equal(np.asarray(png), np.round(np.clip(res.output, 0, 1) * 255).astype(np.uint8))
    return info, res


def test_a_saliency_file_decodes_through_the_cli_with_the_shipped_network(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    _, res = _saliency_through_cli(tmp_path, monkeypatch, "--method", "hyperprior", "--quality", "2")
    # the file names the shipped network; decoding in memory gives the same map
    assert res.tasknet.name == "saliency-sod-lite0"
    r = CliRunner().invoke(main, ["analyze", "a.png", "--task", "saliency", "-o", "clean.png"])
    assert r.exit_code == 0 and Image.open(tmp_path / "clean.png").size == (128, 96)


@pytest.mark.parametrize("method,model,kind", [(None, "dora-lite0-saliency", "codec"),
                                               ("prompt-icm", "picm-lite0-saliency", "adapter")])
def test_a_saliency_file_decodes_through_the_cli_with_a_shipped_set(tmp_path, monkeypatch, method, model, kind):
    # without --method: the measured default for saliency (default_methods.json), DoRA-ICM,
    # whose decoder writes the map itself; Prompt-ICM's set finishes it from coded features
    # (its head's detail branch has no picture there)
    info, res = _saliency_through_cli(tmp_path, monkeypatch, *(["--method", method] if method else []))
    assert f"adapter_hash  {zoo.find(model, kind=kind).hash().hex()}" in info, info
    assert 0.0 <= res.output.min() <= res.output.max() <= 1.0


def test_an_mpa_file_decodes_for_people_and_for_each_shipped_path_set(tmp_path, monkeypatch):
    # the shipped MPA model on the shipped TIC base: one file, the recon default, every
    # shipped path set listed by info and decoding it at its recorded strength; strength 0
    # gives the cls network the base's picture
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    sets = sorted(m.config["task"] for m in zoo.available()
                  if m.kind == "adapter" and m.config.get("method") == "mpa" and m.path.parent == zoo.SHIPPED)
    assert "cls" in sets
    monkeypatch.chdir(tmp_path)
    Image.fromarray(smooth_image()).save("a.png")
    run = CliRunner().invoke
    assert run(main, ["encode", "a.png", "--method", "mpa", "-o", "a.icm"]).exit_code == 0
    assert json.loads(run(main, ["info", "a.icm", "--json"]).output)["tasks"] == ["recon", *sets]
    assert run(main, ["decode", "a.icm", "-o", "a.recon.png"]).exit_code == 0
    assert Image.open("a.recon.png").size == (128, 96)
    data = (tmp_path / "a.icm").read_bytes()
    for task in sets:
        r = run(main, ["decode", "a.icm", "--task", task, "--out-dir", task])
        assert r.exit_code == 0, r.output
    res = pipeline.decode_bytes(data, task="cls")
    assert (tmp_path / "cls" / "a.cls.json").read_bytes() == res.files()[".cls.json"]
    base = pipeline.decode_bytes(data, task="recon").rgb
    at0 = pipeline.decode_bytes(data, task="cls", strength=0.0)
    assert np.array_equal(at0.rgb, base) and not np.array_equal(res.rgb, base)
