"""A task network trained elsewhere, installed as a model folder on ICM_MODEL_PATH, serves
its task like a shipped one: here a (tiny, seeded) depth network, for which icm ships none."""
import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from conftest import write_tiny_tasknet
from icmcodec import pipeline
from icmcodec.methods.hyperprior.tiny import write_tiny_model
from icmcodec.tasks.writers import DEPTH_SCALE


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_a_user_brought_depth_network_decodes_a_file_to_a_16_bit_png(tmp_path, monkeypatch):
    models = tmp_path / "models"
    write_tiny_model(models / "tiny")
    r = icm("models")
    assert "no task network is installed for depth" in r.output.replace("\n", " ")
    write_tiny_tasknet(models / "my-depth", "depth", name="my-depth")
    monkeypatch.setenv("ICM_MODEL_PATH", str(models))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    rgb = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save("a.png")
    listed = json.loads(icm("models", "--json").output)
    assert any(m["name"] == "my-depth" and m["task"] == "depth" and m["kind"] == "tasknet" for m in listed)
    r = icm("encode", "a.png", "--model", "test-tiny-0", "--task", "depth", "--quality", "1", "-o", "d.icm")
    assert r.exit_code == 0, r.output
    assert icm("decode", "d.icm", "--out-dir", "out").exit_code == 0
    png = Image.open(tmp_path / "out" / "d.depth.png")
    assert png.mode.startswith("I;16") and png.size == (56, 40)
    # the documented scale: millimetres, the network's metres times DEPTH_SCALE, rounded
    res = pipeline.decode_bytes((tmp_path / "d.icm").read_bytes())
    assert res.task == "depth" and res.tasknet.name == "my-depth"
    want = np.clip(np.round(res.output * DEPTH_SCALE), 0, 65535)
    assert np.array_equal(np.asarray(png, dtype=np.int64), want.astype(np.int64))
    assert (tmp_path / "out" / "d.depth.preview.png").is_file()
