"""Every registered method through the same interface: encode -> file -> decode, for
recon and a machine task, in Python and through the CLI's --method and --task; each one
set up from its own spec (its tiny model and adapter writers), nothing listed here."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import bitstream
from cli.main import main
from icmcodec import pipeline
from icmcodec.registry import METHODS


NAMES = {}  # method -> the name its tiny model's config gives it


def tiny_name(method):
    return NAMES[method]


@pytest.fixture()
def env(tmp_path, monkeypatch, tasknet_dir):
    from icmcodec import zoo

    for method, spec in METHODS.items():
        NAMES[method] = zoo.entry_at(spec.load("tiny")(tmp_path / "models" / method)).name
    net = tasknet_dir("semseg")
    for method, spec in METHODS.items():
        if spec.adapter:
            spec.load("tiny_adapter")(tmp_path / "models" / f"{method}-semseg", tmp_path / "models" / method, net,
                                      "semseg")
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
    name = tiny_name(method)
    if METHODS[method].produces != "picture":
        return _features_method_round_trip(env, method, name)
    r = icm("encode", "a.png", "--method", method, "--model", name, "-o", "r.icm", "--quality", "1")
    assert r.exit_code == 0, r.output
    hd = bitstream.unpack((env / "r.icm").read_bytes()).header
    assert hd.method == METHODS[method].method_id
    assert icm("decode", "r.icm", "-o", "r.png").exit_code == 0
    assert Image.open(env / "r.png").size == (72, 48)
    # a recon file decodes to a machine task too (the task's network on the picture; MPA: its path set)
    r = icm("decode", "r.icm", "--task", "semseg", "--out-dir", "rs")
    assert r.exit_code == 0, r.output
    assert (env / "rs" / "r.semseg.png").exists()
    # a machine task: the file names the task network; decode runs it; --task recon gives the picture
    r = icm("encode", "a.png", "--method", method, "--model", name, "--task", "semseg", "--task-model",
            "tiny-semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    assert icm("decode", "s.icm", "--out-dir", "out").exit_code == 0
    assert (env / "out" / "s.semseg.png").exists() and (env / "out" / "s.semseg.json").exists()
    assert icm("decode", "s.icm", "--task", "recon", "-o", "s.png").exit_code == 0
    r = icm("decode", "s.icm", "--task", "boundary", "-o", "b.png")
    assert r.exit_code == 2 and "coded for semseg; it can give semseg, recon, not boundary" in r.output
    # the in-memory path and the file path agree
    codec = pipeline.load_codec(name, device="cpu")
    rgb = np.asarray(Image.open(env / "a.png"))
    data = pipeline.encode_image(rgb, quality=1, codec=codec)
    np.testing.assert_array_equal(pipeline.decode_bytes(data, codec=codec).rgb,
                                  pipeline.decode_bytes(data).rgb)


def test_method_and_model_must_agree(env):
    r = icm("encode", "a.png", "--method", "context", "--model", tiny_name("hyperprior"), "-o", "x.icm")
    assert r.exit_code == 2 and "codes with hyperprior, not context" in r.output


def test_missing_or_replaced_artifacts_are_refused_by_name(env, tmp_path, monkeypatch):
    r = icm("encode", "a.png", "--method", "context", "--model", tiny_name("context"), "--task", "semseg",
            "--task-model", "tiny-semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    # the task network is gone: one line naming what is missing
    import shutil

    shutil.rmtree(tmp_path / "models" / "tiny-semseg")
    r = icm("decode", "s.icm", "-o", "x.png")
    assert r.exit_code == 2 and "task network" in r.output and "not installed" in r.output
    # the base model replaced by another one under the same name: refused by hash
    folder = METHODS["context"].load("tiny")(tmp_path / "models" / "context", seed=5)
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


def test_every_spec_is_complete_and_spelled_as_the_bitstream_spells_it():
    for name, spec in METHODS.items():
        assert bitstream.method_name(spec.method_id) == name
        assert spec.load("codec").method == name
        for what in spec.code:
            assert callable(spec.load(what)) or isinstance(spec.load(what), type), (name, what)
        if "train" in spec.code:  # the command a message tells users to run imports
            import importlib

            words = spec.train_command.split()
            importlib.import_module(words[words.index("-m") + 1])


def test_a_recon_file_decodes_to_machine_tasks_through_their_default_networks(env, tasknet_dir):
    cls_net = tasknet_dir("cls", labels=[f"c{i}" for i in range(5)])
    os.environ["ICM_MODEL_PATH"] += os.pathsep + str(cls_net.parent)
    r = icm("encode", "a.png", "--method", "hyperprior", "--model", tiny_name("hyperprior"), "-o", "r.icm")
    assert r.exit_code == 0, r.output
    for task, main_file in (("semseg", "r.semseg.png"), ("cls", "r.cls.json")):
        r = icm("decode", "r.icm", "--task", task, "--out-dir", task)
        assert r.exit_code == 0, r.output
        assert (env / task / main_file).is_file()
    # the JSON output names the network that ran, and it is the task's default one
    import json

    from icmcodec import zoo

    default = zoo.find(task="cls", kind="tasknet")
    doc = json.loads((env / "cls" / "r.cls.json").read_text())
    assert doc["task_network"] == {"name": default.name, "hash": default.hash().hex()}
    # the same as running that network on the decoded picture; --task-model chooses it
    data = (env / "r.icm").read_bytes()
    rgb = pipeline.decode_bytes(data).rgb
    net = pipeline.load_tasknet("semseg", device="cpu")
    np.testing.assert_array_equal(pipeline.decode_bytes(data, task="semseg").output, net.predict([rgb])[0])
    assert icm("decode", "r.icm", "--task", "semseg", "--task-model", "tiny-semseg", "-o", "m.png").exit_code == 0
    r = icm("decode", "r.icm", "--task", "semseg", "--task-model", str(cls_net), "-o", "m.png")
    assert r.exit_code == 2 and "is for cls, not semseg" in r.output


def test_a_features_file_refuses_other_outputs_with_one_line(env):
    name = next(n for m, n in NAMES.items() if METHODS[m].produces == "features")
    r = icm("encode", "a.png", "--model", name, "--task", "semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    for other in ("recon", "cls"):
        r = icm("decode", "s.icm", "--task", other, "-o", "x.out")
        assert r.exit_code == 2 and r.output.count("\n") == 1 and "Traceback" not in r.output
        assert f"it can give semseg, not {other}" in r.output


def test_the_default_method_per_task_is_the_stored_measured_best():
    import importlib.util
    from pathlib import Path

    from icmcodec.registry import default_choices, default_method

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "defaults.py"
    mod_spec = importlib.util.spec_from_file_location("defaults_script", script)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    recomputed = {k: v for k, v in mod.choose().items() if not k.startswith("_")}
    assert recomputed == default_choices()
    assert default_method("semseg").name == "dora-icm" and default_method("cls").name == "prompt-icm"
    for task, choice in recomputed.items():
        best = min(choice["candidates"].items(), key=lambda kv: kv[1]["bd_rate"])
        assert choice["method"] == (best[0] if best[1]["bd_rate"] < 0 else "hyperprior")
        assert default_method(task).name == choice["method"]
    assert default_method("depth").name == "hyperprior"  # nothing measured: the picture path


@pytest.fixture()
def toy(monkeypatch):
    """The test suite's own method package (tests/fixtures/toy_method), registered."""
    import sys
    from pathlib import Path

    from icmcodec import registry

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures" / "toy_method"))
    import icm_toy_method

    registry.register(icm_toy_method.SPEC)
    yield icm_toy_method.SPEC
    registry.unregister("toy")
    sys.modules.pop("icm_toy_method", None)


def test_a_method_package_from_outside_icm_codes_through_the_cli_and_the_api(env, toy, tmp_path):
    toy.load("tiny")(tmp_path / "models" / "toy")
    r = icm("encode", "a.png", "--method", "toy", "-o", "t.icm", "--quality", "1")
    assert r.exit_code == 0, r.output
    info = icm("info", "t.icm", "--json")
    import json

    assert json.loads(info.output)["method"] == "private"  # the header's id: PRIVATE (240)
    assert icm("decode", "t.icm", "-o", "t.png").exit_code == 0
    rgb = np.asarray(Image.open(env / "a.png"))
    dec = np.asarray(Image.open(env / "t.png")).astype(int)
    assert dec.shape == rgb.shape and np.abs(dec - rgb.reshape(12, 4, 18, 4, 3).mean((1, 3)).repeat(4, 0).repeat(
        4, 1)).max() <= 1.5  # quality 1: steps of 2 on the 4x4 means
    # a machine task through the same plumbing: the file names the network, decode runs it
    r = icm("encode", "a.png", "--method", "toy", "--task", "semseg", "-o", "s.icm")
    assert r.exit_code == 0, r.output
    assert icm("decode", "s.icm", "--out-dir", "out").exit_code == 0 and (env / "out" / "s.semseg.png").is_file()
    # the Python API, the same bytes
    import icmcodec

    data = icmcodec.encode(rgb, method="toy", quality=1)
    assert data == (env / "t.icm").read_bytes()
    np.testing.assert_array_equal(icmcodec.decode(data).rgb, dec)
    assert icm("models", "--json").exit_code == 0
