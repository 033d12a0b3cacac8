"""Every registered method through the same interface: encode -> file -> decode, for
recon and a machine task, in Python and through the CLI's --method and --task."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import bitstream
from cli.main import main
from icmcodec import pipeline
from icmcodec.registry import METHODS
from icmcodec.zoo.tiny import (write_tiny_context_model, write_tiny_model, write_tiny_prompt_icm_model,
                               write_tiny_prompt_icm_adapter, write_tiny_transtic_adapter, write_tiny_transtic_model)

# a tiny model writer per method: a new method without one fails test_every_method_is_covered
TINY = {"hyperprior": (write_tiny_model, "test-tiny-0"), "context": (write_tiny_context_model, "test-tiny-context-0"),
        "transtic": (write_tiny_transtic_model, "test-tiny-transtic-0"),
        "prompt-icm": (write_tiny_prompt_icm_model, "test-tiny-prompt-icm-0")}
# methods whose machine-task files name a per-task adapter: a writer of one for semseg
ARTIFACTS = {"transtic": write_tiny_transtic_adapter, "prompt-icm": write_tiny_prompt_icm_adapter}


def test_every_method_is_covered():
    assert set(TINY) == set(METHODS)


@pytest.fixture()
def env(tmp_path, monkeypatch, tasknet_dir):
    for method, (write, name) in TINY.items():
        write(tmp_path / "models" / name)
    net = tasknet_dir("semseg")
    for method, write in ARTIFACTS.items():
        write(tmp_path / "models" / f"{method}-semseg", tmp_path / "models" / TINY[method][1], net, "semseg")
    monkeypatch.setenv("ICM_MODEL_PATH", f"{tmp_path / 'models'}{os.pathsep}{net.parent}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 72, 3)) * 255).astype(np.uint8)).save(work / "a.png")
    return work


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_round_trips_through_files_and_the_cli(env, method):
    name = TINY[method][1]
    if METHODS[method].produces != "picture":
        return _features_method_round_trip(env, method, name)
    r = icm("encode", "a.png", "--method", method, "--model", name, "-o", "r.icm", "--quality", "1")
    assert r.exit_code == 0, r.output
    hd = bitstream.unpack((env / "r.icm").read_bytes()).header
    assert hd.method == METHODS[method].method_id
    assert icm("decode", "r.icm", "-o", "r.png").exit_code == 0
    assert Image.open(env / "r.png").size == (72, 48)
    # a machine task: the file names the task network; decode runs it; --task recon gives the picture
    r = icm("encode", "a.png", "--method", method, "--model", name, "--task", "semseg", "--task-model",
            "tiny-semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    assert icm("decode", "s.icm", "--out-dir", "out").exit_code == 0
    assert (env / "out" / "s.semseg.png").exists() and (env / "out" / "s.semseg.json").exists()
    assert icm("decode", "s.icm", "--task", "recon", "-o", "s.png").exit_code == 0
    r = icm("decode", "s.icm", "--task", "boundary", "-o", "b.png")
    assert r.exit_code == 2 and "coded for semseg" in r.output
    # the in-memory path and the file path agree
    codec = pipeline.load_codec(name, device="cpu")
    rgb = np.asarray(Image.open(env / "a.png"))
    data = pipeline.encode_image(rgb, quality=1, codec=codec)
    np.testing.assert_array_equal(pipeline.decode_bytes(data, codec=codec).rgb,
                                  pipeline.decode_bytes(data).rgb)


def test_method_and_model_must_agree(env):
    r = icm("encode", "a.png", "--method", "context", "--model", "test-tiny-0", "-o", "x.icm")
    assert r.exit_code == 2 and "codes with hyperprior, not context" in r.output


def test_missing_or_replaced_artifacts_are_refused_by_name(env, tmp_path, monkeypatch):
    r = icm("encode", "a.png", "--method", "context", "--model", "test-tiny-context-0", "--task", "semseg",
            "--task-model", "tiny-semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    # the task network is gone: one line naming what is missing
    import shutil

    shutil.rmtree(tmp_path / "models" / "tiny-semseg")
    r = icm("decode", "s.icm", "-o", "x.png")
    assert r.exit_code == 2 and "task network" in r.output and "not installed" in r.output
    # the base model replaced by another one under the same name: refused by hash
    folder = write_tiny_context_model(tmp_path / "models" / "test-tiny-context-0", seed=5)
    st = os.stat(folder / "model.safetensors")  # a replacement made later than the first file
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = icm("decode", "s.icm", "--task", "recon", "-o", "x.png")
    assert r.exit_code == 2 and "not installed" in r.output, r.output


def _features_method_round_trip(env, method, name):
    """A method that codes features (Prompt-ICM): machine tasks only, no picture."""
    r = icm("encode", "a.png", "--method", method, "--model", name, "-o", "r.icm")
    assert r.exit_code == 2 and "does not code task recon" in r.output
    r = icm("encode", "a.png", "--method", method, "--model", name, "--task", "semseg", "--task-model",
            "tiny-semseg", "-o", "s.icm", "--quality", "1")
    assert r.exit_code == 0, r.output
    hd = bitstream.unpack((env / "s.icm").read_bytes()).header
    assert hd.method == METHODS[method].method_id
    assert icm("decode", "s.icm", "--out-dir", "out").exit_code == 0
    assert Image.open(env / "out" / "s.semseg.png").size == (72, 48)
    r = icm("decode", "s.icm", "--task", "recon", "-o", "s.png")
    assert r.exit_code == 2 and "coded for semseg" in r.output and not (env / "s.png").exists()
    # the in-memory path and the file path agree
    codec = pipeline.load_codec(name, device="cpu")
    rgb = np.asarray(Image.open(env / "a.png"))
    data = pipeline.encode_image(rgb, task="semseg", quality=1, codec=codec)
    np.testing.assert_array_equal(pipeline.decode_bytes(data, codec=codec).output, pipeline.decode_bytes(data).output)
