"""Task registry, task networks, the coded task path, `icm analyze` and task training."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_tiny_tasknet
from PIL import Image

import bitstream
from bitstream import TaskTag
from cli.main import main
from icmcodec import pipeline
from icmcodec.tasks.predict import TaskModel
from icmcodec.tasks.registry import CAMVID_CLASSES, TASKS, task
from icmcodec.methods.hyperprior.tiny import write_tiny_model

CODEC = "test-tiny-0"


def rgb(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_registry_covers_every_machine_task_tag():
    assert set(TASKS) == {t.name.lower() for t in TaskTag if t != TaskTag.RECON}
    for name, spec in TASKS.items():
        assert spec.tag.name.lower() == name and spec.kind in ("dense", "global")
    with pytest.raises(KeyError, match="unknown task"):
        task("nope")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_predicts_and_writes_files_pillow_opens(tmp_path, name):
    labels = ["cat", "dog", "eel"] if name == "cls" else None
    write_tiny_tasknet(tmp_path / "m", name, labels=labels)
    net = TaskModel.load(tmp_path / "m")
    outs = net.predict([rgb(30, 40), rgb(21, 17, 1), rgb(30, 40, 2)])
    files = net.write(outs[1])
    main_suffix = next(iter(files))
    assert main_suffix.startswith(f".{name}.")
    if name == "cls":
        assert outs[0].shape == (3,) and outs[0].sum() == pytest.approx(1.0)
        doc = json.loads(files[".cls.json"])
        assert doc["label"] in labels and len(doc["top5"]) == 3
        return
    im = Image.open(__import__("io").BytesIO(files[main_suffix]))
    assert im.size == (17, 21)
    expect_mode = {"semseg": "P", "boundary": "L", "saliency": "L", "depth": "I;16", "normal": "RGB"}[name]
    assert im.mode == expect_mode
    if name == "semseg":
        assert np.array_equal(np.asarray(im), outs[1])
        legend = json.loads(files[".semseg.json"])
        assert [c["name"] for c in legend["classes"]] == list(CAMVID_CLASSES)
    if name in ("boundary", "saliency"):
        assert np.array_equal(np.asarray(im), np.round(outs[1] * 255).astype(np.uint8))


def test_saved_network_reloads_to_identical_outputs_and_hash(tmp_path):
    write_tiny_tasknet(tmp_path / "m", "semseg", seed=3)
    a, b = TaskModel.load(tmp_path / "m"), TaskModel.load(tmp_path / "m")
    x = rgb(32, 48)
    assert a.hash == b.hash and len(a.hash) == 16
    assert np.array_equal(a.logits([x])[0], b.logits([x])[0])
    write_tiny_tasknet(tmp_path / "n", "semseg", seed=4)
    assert TaskModel.load(tmp_path / "n").hash != a.hash


def test_batched_prediction_equals_one_at_a_time(tmp_path):
    write_tiny_tasknet(tmp_path / "m", "boundary")
    net = TaskModel.load(tmp_path / "m")
    xs = [rgb(32, 32, i) for i in range(3)]
    together = net.logits(xs, batch=3)
    for x, t in zip(xs, together):
        np.testing.assert_allclose(net.logits([x])[0], t, atol=1e-5)


def test_losses_prefer_the_right_answer_and_boundary_ignores_uncertain_pixels():
    target = torch.tensor([[[0, 1], [2, 11]]])
    good = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 3]]]), 11).permute(0, 3, 1, 2).float() * 10
    assert task("semseg").loss(good, target) < task("semseg").loss(-good, target)
    # the void pixel (11) must not count: changing its logits changes nothing
    other = good.clone()
    other[0, :, 1, 1] = torch.randn(11)
    assert torch.isclose(task("semseg").loss(good, target), task("semseg").loss(other, target))
    frac = torch.tensor([[[1.0, 0.0], [0.15, 0.0]]])
    lg = torch.zeros(1, 1, 2, 2)
    lg2 = lg.clone()
    lg2[0, 0, 1, 0] = 5.0  # the pixel one annotator in seven marked: left out
    assert torch.isclose(task("boundary").loss(lg, frac), task("boundary").loss(lg2, frac))
    lg3 = lg.clone()
    lg3[0, 0, 0, 0] = 5.0  # agreeing with a sure edge lowers the loss
    assert task("boundary").loss(lg3, frac) < task("boundary").loss(lg, frac)


def test_backbone_has_attention_projections_and_takes_a_local_timm_weights_file(tmp_path):
    import timm

    from icmcodec.tasks.backbone import BackboneError, attention_projections, create_backbone

    names = attention_projections(create_backbone())
    assert any(n.endswith("attn.q") for n in names) and any(n.endswith("attn.kv") for n in names)
    ref = timm.create_model("test_vit")
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    b = create_backbone("test_vit", weights=tmp_path / "w.pth")
    got = {k.split(".", 1)[1]: v for k, v in b.state_dict().items()}
    key = "blocks.0.attn.qkv.weight"
    assert torch.equal(got[key], ref.state_dict()[key])
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("test_vit", weights=tmp_path / "missing.pth")
    with pytest.raises(BackboneError, match="unknown timm model"):
        create_backbone("no_such_model")


# ---------------------------------------------------------------- CLI and coded path
@pytest.fixture()
def env(tmp_path, monkeypatch):
    models = tmp_path / "models"
    write_tiny_model(models / "tiny")
    write_tiny_tasknet(models / "seg", "semseg", name="tiny-semseg")
    write_tiny_tasknet(models / "cls", "cls", labels=["ant", "bee"], name="tiny-cls")
    write_tiny_tasknet(models / "bnd", "boundary", name="tiny-boundary")
    monkeypatch.setenv("ICM_MODEL_PATH", str(models))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for i, (h, w) in enumerate([(30, 40), (30, 40), (25, 33)]):
        Image.fromarray(rgb(h, w, i)).save(work / f"p{i}.png")
    return work


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_analyze_names_outputs_by_task_and_keeps_going_past_a_bad_file(env):
    (env / "bad.png").write_bytes(b"not a picture")
    r = icm("analyze", "p0.png", "p1.png", "bad.png", "p2.png", "--task", "semseg", "--out-dir", "out", "--batch", "2",
            "--model", "tiny-semseg")
    assert r.exit_code == 1, r.output
    assert "bad.png" in r.output and "Traceback" not in r.output
    for i in range(3):
        im = Image.open(env / "out" / f"p{i}.semseg.png")
        assert im.mode == "P" and (np.asarray(im) <= 10).all()
        assert json.loads((env / "out" / f"p{i}.semseg.json").read_text())["classes"][3]["name"] == "Road"
    assert not (env / "out" / "bad.semseg.png").exists()
    r = icm("analyze", "p2.png", "--task", "cls", "-o", "label.json", "--model", "tiny-cls")
    assert r.exit_code == 0, r.output
    assert json.loads((env / "label.json").read_text())["label"] in ("ant", "bee")
    r = icm("analyze", "p2.png", "--task", "semseg", "-o", "seg.png", "--model", "tiny-semseg")
    assert r.exit_code == 0 and (env / "seg.png").exists() and (env / "seg.json").exists()


def test_encode_for_a_task_then_decode_runs_the_named_network(env):
    r = icm("encode", "p2.png", "--task", "semseg", "--model", CODEC, "--quality", "2", "--task-model", "tiny-semseg")
    assert r.exit_code == 0, r.output
    info = json.loads(icm("info", "p2.icm", "--json").output)
    net = pipeline.load_tasknet("semseg", "tiny-semseg", device="cpu")
    assert info["task"] == "semseg" and info["adapter_hash"] == net.hash.hex()
    r = icm("decode", "p2.icm")
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(env / "p2.semseg.png"))
    res = pipeline.decode_bytes((env / "p2.icm").read_bytes(), device="cpu")
    assert res.task == "semseg" and np.array_equal(got, net.predict([res.rgb])[0])
    assert (env / "p2.semseg.json").exists()
    # cls: a JSON label from the decoder, same as analyze on the reconstruction
    assert icm("encode", "p0.png", "--task", "cls", "--model", CODEC, "-o", "c.icm", "--task-model", "tiny-cls").exit_code == 0
    assert icm("decode", "c.icm", "--out-dir", "dec").exit_code == 0
    assert json.loads((env / "dec" / "c.cls.json").read_text())["label"] in ("ant", "bee")


def test_decode_without_the_task_network_is_a_clear_error(env, monkeypatch, tmp_path):
    assert icm("encode", "p0.png", "--task", "semseg", "--model", CODEC, "--task-model", "tiny-semseg").exit_code == 0
    only_codec = tmp_path / "only"
    write_tiny_model(only_codec / "tiny")
    monkeypatch.setenv("ICM_MODEL_PATH", str(only_codec))
    pipeline._load_tasknet.cache_clear()
    r = icm("decode", "p0.icm")
    assert r.exit_code == 2 and "task network" in r.output and "Traceback" not in r.output
    assert not (env / "p0.semseg.png").exists()


@pytest.mark.parametrize("retired", ["semseg-camvid", "cls-caltech101", "boundary-bsds500"])
def test_a_file_made_for_a_retired_network_names_it_and_its_successor(env, retired):
    """The pvt_nano networks of icm 0.1 no longer ship: a file that names one (by the
    hash in its header) fails with one line naming that network and its successor."""
    import dataclasses

    from icmcodec import zoo

    old_hash, old = next((h, v) for h, v in zoo.retired().items() if v["name"] == retired)
    assert icm("encode", "p0.png", "--task", old["task"], "--model", CODEC, "-o", "x.icm",
               "--task-model", f"tiny-{old['task']}").exit_code == 0
    c = bitstream.unpack((env / "x.icm").read_bytes())
    forged = bitstream.pack(dataclasses.replace(c.header, adapter_hash=bytes.fromhex(old_hash)), c.chunks)
    (env / "old.icm").write_bytes(forged)
    r = icm("decode", "old.icm")
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = r.output.strip()
    assert "\n" not in line and retired in line and old["successor"] in line
    assert not list(env.glob(f"old.{old['task']}*"))


def test_encode_rejects_unknown_task_and_task_model_for_recon(env):
    r = icm("encode", "p0.png", "--task", "poetry", "--model", CODEC)
    assert r.exit_code == 2 and "unknown task" in r.output
    r = icm("encode", "p0.png", "--task-model", "tiny-semseg", "--model", CODEC)
    assert r.exit_code == 2 and "machine tasks" in r.output
    r = icm("encode", "p0.png", "--method", "jpeg2000", "--model", CODEC)
    assert r.exit_code == 2 and "unknown method" in r.output
    assert icm("encode", "p0.png", "--method", "hyperprior", "--model", CODEC).exit_code == 0


# ---------------------------------------------------------------- training
def _camvid_like(root):
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(3):
            Image.fromarray(rgb(40, 48, i)).save(root / split / f"f{i}.png")
            lab = np.random.default_rng(i).integers(0, 12, (40, 48)).astype(np.uint8)
            Image.fromarray(lab).save(root / f"{split}annot" / f"f{i}.png")


def test_task_training_runs_resumes_and_exports_a_loadable_network(tmp_path, monkeypatch):
    import icmcodec.tasks.train as tt

    monkeypatch.setitem(tt.DEFAULTS, "semseg", dict(crop=32, batch=2, lr=1e-3, steps=2, input={"scale": 1.0},
                                                     head={"dim": 8}))
    _camvid_like(tmp_path / "cv")
    run = tmp_path / "run"
    args = ["--task", "semseg", "--data", str(tmp_path / "cv"), "--run", str(run), "--val-every", "2"]
    tt.main(args)
    ck = torch.load(run / "last.pt", weights_only=False)
    assert ck["step"] == 2 and ck["val"]["metric"] == "mIoU" and 0 <= ck["val"]["value"] <= 1
    tt.main(args + ["--resume", "--steps", "4"])
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 4
    assert len((run / "val.csv").read_text().splitlines()) == 2
    tt.main(args + ["--export", str(tmp_path / "exported"), "--name", "seg-test"])
    net = TaskModel.load(tmp_path / "exported")
    assert net.config["name"] == "seg-test" and net.config["clean_metric"]["step"] == 4
    assert net.predict([rgb(20, 24)])[0].shape == (20, 24)
    # a new run warm-starts its backbone from the exported folder
    tt.main(["--task", "semseg", "--data", str(tmp_path / "cv"), "--run", str(tmp_path / "run2"),
             "--init", str(tmp_path / "exported"), "--val-every", "2"])
    a = torch.load(tmp_path / "run2" / "last.pt", weights_only=False)["net"]
    assert a["backbone.stages_0.blocks.0.attn.q.weight"].shape == ck["net"]["backbone.stages_0.blocks.0.attn.q.weight"].shape


def test_models_lists_task_networks_with_their_kind_and_size(env):
    rows = json.loads(icm("models", "--json").output)
    seg = next(r for r in rows if r["name"] == "tiny-semseg")
    assert seg["kind"] == "tasknet" and seg["task"] == "semseg" and seg["quality_range"] is None
    assert seg["params"] == sum(v.numel() for k, v in TaskModel.load(seg["path"]).net.state_dict().items()
                                if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    text = icm("models").output
    assert "tiny-semseg" in text and "tasknet" in text


# ---------------------------------------------------------------- rate-accuracy benchmark
def test_rate_accuracy_helpers():
    from icmcodec.bench.ra import bd_pair, spread

    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 0) == [1, 2]
    anchor = [{"bpp": b, "metric": m} for b, m in [(0.1, 0.2), (0.2, 0.4), (0.4, 0.6), (0.8, 0.7)]]
    half = [{"bpp": p["bpp"] / 2, "metric": p["metric"]} for p in anchor]
    assert bd_pair(anchor, half, 1.0)["bd_rate"] == pytest.approx(-50.0, abs=1e-6)
    # lower-is-better metrics (errors): the same curve shape with the metric negated
    err = [{"bpp": p["bpp"], "metric": 1 - p["metric"]} for p in anchor]
    err_half = [{"bpp": p["bpp"] / 2, "metric": p["metric"]} for p in err]
    r = bd_pair(err, err_half, -1.0)
    assert r["bd_rate"] == pytest.approx(-50.0, abs=1e-6) and r["bd_metric"] < 0  # fewer errors at equal rate


def test_rate_accuracy_benchmark_end_to_end(env, tmp_path):
    from icmcodec.bench import ra

    _camvid_like(tmp_path / "cv")
    out = tmp_path / "ra"
    ra.main([str(tmp_path / "cv"), "--task", "semseg", "--task-model", "tiny-semseg", "--model", CODEC,
             "--anchors", "jpeg", "--qualities", "0,1,2", "--limit", "2", "--out", str(out)])
    doc = json.loads((out / "ra.json").read_text())
    assert doc["meta"]["samples"] == 2 and doc["meta"]["tasknet"] == "tiny-semseg"
    assert [p["quality"] for p in doc["curves"]["icm-test-tiny-0"]] == [0.0, 1.0, 2.0]
    assert set(doc["bd"]) == {"icm-test-tiny-0"} and doc["meta"]["models"] == {"icm-test-tiny-0": "test-tiny-0"}
    assert len(doc["curves"]["jpeg"]) == 8 and 0 <= doc["clean"] <= 1
    bpps = [p["bpp"] for p in doc["curves"]["icm-test-tiny-0"]]
    assert bpps == sorted(bpps) and bpps[0] > 0
    assert (out / "ra.png").stat().st_size > 1000 and (out / "ra.csv").read_text().startswith("codec,quality")


def test_a_resumed_benchmark_equals_one_run(env, tmp_path, monkeypatch):
    """Kill a run after its first picture (here: a log cut after it), then resume: the
    same document as one run, and the first picture is not recomputed; other settings
    refuse to resume; two shards give the same document as one run."""
    from icmcodec.bench import ra

    _camvid_like(tmp_path / "cv")
    args = [str(tmp_path / "cv"), "--task", "semseg", "--task-model", "tiny-semseg", "--model", CODEC,
            "--anchors", "jpeg", "--qualities", "0,2", "--limit", "3"]
    import dataclasses

    real = ra.pick_anchors

    def mutating(names):  # an anchor library that changes the settings it is given while coding (pillow-heif)
        out = {}
        for n, x in real(names).items():
            def enc(rgb, q, x=x):
                x.settings.setdefault("added_by_the_library", [1, 2])
                return x.encode(rgb, q)
            out[n] = dataclasses.replace(x, encode=enc)
        return out

    monkeypatch.setattr(ra, "pick_anchors", mutating)
    ra.main(args + ["--out", str(tmp_path / "one")])
    one = json.loads((tmp_path / "one" / "ra.json").read_text())
    lines = (tmp_path / "one" / "pictures.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["settings"]["task"] == "semseg"
    (tmp_path / "two").mkdir()
    # settings + picture 1, and picture 2 cut off mid-line (a run killed while writing it)
    (tmp_path / "two" / "pictures.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:50])
    ra.main(args + ["--out", str(tmp_path / "two"), "--resume"])
    two = json.loads((tmp_path / "two" / "ra.json").read_text())
    assert two["meta"]["pictures_from_earlier_runs"] == 1
    assert two["curves"] == one["curves"] and two["clean"] == one["clean"] and two["bd"] == one["bd"]
    with pytest.raises(SystemExit, match="other settings"):
        ra.main(args[:-2] + ["--limit", "2", "--out", str(tmp_path / "two"), "--resume"])
    # two shards into one folder: the first leaves the results to the second
    ra.main(args + ["--out", str(tmp_path / "sh"), "--shard", "1/2"])
    assert not (tmp_path / "sh" / "ra.json").exists()
    ra.main(args + ["--out", str(tmp_path / "sh"), "--shard", "2/2"])
    sh = json.loads((tmp_path / "sh" / "ra.json").read_text())
    assert sh["curves"] == one["curves"] and sh["clean"] == one["clean"]
    assert [len((tmp_path / "sh" / f"pictures-{k}-of-2.jsonl").read_text().splitlines()) for k in (1, 2)] == [3, 2]


def test_stored_curves_serve_a_run_over_the_same_or_fewer_pictures(env, tmp_path):
    """--curves-from: a run over the whole split takes the stored curves as they are; a
    run over fewer pictures gets them recomputed from the per-picture logs, equal to
    computing them afresh on those pictures; another network is refused."""
    from icmcodec.bench import ra

    _camvid_like(tmp_path / "cv")
    base = [str(tmp_path / "cv"), "--task", "semseg", "--task-model", "tiny-semseg", "--model", CODEC,
            "--qualities", "0,2"]
    ra.main(base + ["--anchors", "jpeg", "--out", str(tmp_path / "all")])
    stored = tmp_path / "all" / "ra.json"
    ra.main(base + ["--anchors", "jpeg", "--limit", "2", "--out", str(tmp_path / "two")])
    fresh = json.loads((tmp_path / "two" / "ra.json").read_text())["curves"]["jpeg"]
    ra.main(base + ["--anchors", "none", "--limit", "2", "--curves-from", str(stored), "--out", str(tmp_path / "sub")])
    sub = json.loads((tmp_path / "sub" / "ra.json").read_text())
    got = sub["curves"]["jpeg"]
    assert [p["quality"] for p in got] == [p["quality"] for p in fresh] and "jpeg" in sub["bd"]["icm-test-tiny-0"]
    for k in ("bpp", "metric"):
        assert [p[k] for p in got] == pytest.approx([p[k] for p in fresh], rel=1e-12)
    ra.main(base + ["--anchors", "none", "--curves-from", str(stored), "--out", str(tmp_path / "same")])
    whole = json.loads(stored.read_text())["curves"]["jpeg"]
    assert json.loads((tmp_path / "same" / "ra.json").read_text())["curves"]["jpeg"] == whole
    doc = json.loads(stored.read_text())
    doc["meta"]["tasknet_hash"] = "00" * 16
    (tmp_path / "other.json").write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="not comparable"):
        ra.main(base + ["--anchors", "none", "--curves-from", str(tmp_path / "other.json"),
                        "--out", str(tmp_path / "x")])
