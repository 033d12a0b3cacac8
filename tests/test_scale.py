"""Coding at scale (issue 15): rate control, shards, resumable batches, the manifest,
and the Python API."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import bitstream
import icmcodec
from cli.jobs import Job, select_shard, shard_of
from cli.main import main
from icmcodec import pipeline
from icmcodec.methods.hyperprior.tiny import tiny_codec, write_tiny_model

from conftest import slow_icm


def picture(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(np.stack([xx * 2, yy * 2, xx + yy], -1) % 256 + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
    return tiny_codec(0)


# ---- rate control ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_bpp_is_never_exceeded_and_the_next_quality_would(codec, seed):
    rgb = picture(seed=seed)
    lo = len(pipeline.encode_image(rgb, quality=0, codec=codec))
    hi = len(pipeline.encode_image(rgb, quality=2, codec=codec))
    for budget in np.linspace(lo, hi, 5).astype(int)[1:-1]:
        data = pipeline.encode_image(rgb, max_bytes=int(budget), codec=codec)
        q = bitstream.unpack(data).header.quality
        assert len(data) <= budget
        above = pipeline.encode_image(rgb, quality=q + 1 / 256, codec=codec)
        assert len(above) > budget  # the highest quality that fits
        bpp = 8 * budget / (96 * 128)
        by_bpp = pipeline.encode_image(rgb, bpp=bpp, codec=codec)
        assert 8 * len(by_bpp) / (96 * 128) <= bpp


def test_a_budget_below_the_smallest_file_fails_cleanly(codec, tmp_path, monkeypatch):
    rgb = picture()
    smallest = len(pipeline.encode_image(rgb, quality=0, codec=codec))
    with pytest.raises(pipeline.UsageError, match="even the lowest quality"):
        pipeline.encode_image(rgb, max_bytes=smallest - 1, codec=codec)
    assert len(pipeline.encode_image(rgb, max_bytes=smallest, codec=codec)) == smallest
    write_tiny_model(tmp_path / "m" / "tiny")
    monkeypatch.setenv("ICM_MODEL_PATH", str(tmp_path / "m"))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(picture(64, 64, 3)).save(tmp_path / "b.png")
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--model", "test-tiny-0", "--max-bytes", "60",
                                  "-o", str(tmp_path / "a.icm")])
    # 60 bytes is below the smallest file the format allows: refused before any coding (issue 24)
    assert r.exit_code == 2 and "below the smallest .icm file" in r.output and not (tmp_path / "a.icm").exists()
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--model", "test-tiny-0", "--max-bytes",
                                  str(smallest - 1), "-o", str(tmp_path / "a.icm")])
    assert r.exit_code == 2 and "even the lowest quality" in r.output and not (tmp_path / "a.icm").exists()
    # in a batch, the picture that cannot fit fails and the batch goes on
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model",
                                  "test-tiny-0", "--max-bytes", str(smallest - 1), "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 1 and "1 ok, 1 failed" in r.output
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--model", "test-tiny-0", "--quality", "1",
                                  "--bpp", "0.5"])
    assert r.exit_code == 2 and "not both" in r.output


# ---- shards -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text("abcxyz/._-0123", min_size=1, max_size=12), max_size=40, unique=True),
       n=st.integers(1, 7), seed=st.integers(0, 1000))
def test_shards_partition_the_inputs_in_any_order(names, n, seed):
    jobs = [Job(name, Path(name)) for name in names]
    parts = [select_shard(jobs, f"{k}/{n}") for k in range(1, n + 1)]
    assert sorted(j.src for p in parts for j in p) == sorted(names)  # every input exactly once
    shuffled = [jobs[i] for i in np.random.default_rng(seed).permutation(len(jobs))]
    for k in range(1, n + 1):
        assert {j.src for j in select_shard(shuffled, f"{k}/{n}")} == {j.src for j in parts[k - 1]}


def test_shard_is_a_stable_hash_of_the_relative_path():
    # pinned: the same split on every machine and every version (sha256 of the posix path)
    assert [shard_of(Path(p), 4) for p in ("a.png", "sub/b.jpg", "x/y/z.webp")] == \
        [shard_of(Path(p), 4) for p in ("a.png", "sub/b.jpg", "x/y/z.webp")]
    import hashlib

    assert shard_of(Path("sub/b.jpg"), 5) == int.from_bytes(hashlib.sha256(b"sub/b.jpg").digest()[:8], "big") % 5 + 1


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    write_tiny_model(tmp_path / "m" / "tiny")
    monkeypatch.setenv("ICM_MODEL_PATH", str(tmp_path / "m"))
    src = tmp_path / "in"
    for i in range(12):
        sub = src / ("s1" if i % 3 else "s2")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture(40 + i, 56, seed=i)).save(sub / f"p{i}.png")
    return tmp_path


def icm(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shards_together_are_the_unsharded_run_byte_for_byte(folder):
    assert icm("encode", folder / "in", "--out-dir", folder / "all", "--model", "test-tiny-0").exit_code == 0
    counts = []
    for k in (1, 2, 3):
        r = icm("encode", folder / "in", "--out-dir", folder / "sharded", "--model", "test-tiny-0", "--shard", f"{k}/3",
                "--manifest", folder / f"m{k}.jsonl")
        assert r.exit_code == 0, r.output
        counts.append(len((folder / f"m{k}.jsonl").read_text().splitlines()))
    assert sum(counts) == 12
    assert tree(folder / "sharded") == tree(folder / "all")
    r = icm("encode", folder / "in", "--out-dir", folder / "x", "--shard", "4/3", "--model", "test-tiny-0")
    assert r.exit_code == 2 and "--shard" in r.output


def test_manifest_lines_describe_each_output(folder):
    r = icm("encode", folder / "in", "--out-dir", folder / "o", "--model", "test-tiny-0", "--bpp", "2",
            "--manifest", folder / "m.jsonl")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (folder / "m.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    for rec in lines:
        data = Path(rec["output"]).read_bytes()
        hd = bitstream.unpack(data).header
        assert rec["bytes"] == len(data) and rec["bpp"] <= 2 and rec["quality"] == hd.quality
        assert rec["method"] == "hyperprior" and rec["task"] == "recon" and rec["model_hash"] == hd.model_hash.hex()
    r = icm("decode", folder / "o", "--out-dir", folder / "d", "--manifest", folder / "d.jsonl")
    assert r.exit_code == 0 and len((folder / "d.jsonl").read_text().splitlines()) == 12


KILLABLE = slow_icm(0.3)


def test_a_killed_batch_resumes_to_the_clean_run(folder):
    assert icm("encode", folder / "in", "--out-dir", folder / "clean", "--model", "test-tiny-0").exit_code == 0
    cmd = [sys.executable, "-c", KILLABLE, "encode", str(folder / "in"), "--out-dir", str(folder / "run"),
           "--model", "test-tiny-0", "--manifest", str(folder / "run.jsonl")]
    p = subprocess.Popen(cmd, env=dict(os.environ), cwd=Path(__file__).parent.parent,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((folder / "run").rglob("*.icm")) if (folder / "run").exists() else []) < 4:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = list((folder / "run").rglob("*.icm"))
    assert 4 <= len(done) < 12
    assert not [f for f in (folder / "run").rglob("*") if f.name.endswith(".part")]  # no partial file
    for line in (folder / "run.jsonl").read_text().splitlines():
        json.loads(line)  # whole lines only
    r = icm("encode", folder / "in", "--out-dir", folder / "run", "--model", "test-tiny-0", "--skip-existing",
            "--manifest", folder / "run.jsonl")
    assert r.exit_code == 0 and "already there, skipped" in r.output, r.output
    assert tree(folder / "run") == tree(folder / "clean")
    # decode resumes the same way
    assert icm("decode", folder / "run", "--out-dir", folder / "dec").exit_code == 0
    r = icm("decode", folder / "run", "--out-dir", folder / "dec", "--skip-existing")
    assert "12 already there" in r.output


# ---- the Python API ---------------------------------------------------------------------
def test_python_api_on_arrays_bytes_and_pil(tmp_path, monkeypatch, tasknet_dir):
    write_tiny_model(tmp_path / "m" / "tiny")
    net = tasknet_dir("semseg")
    monkeypatch.setenv("ICM_MODEL_PATH", f"{tmp_path / 'm'}{os.pathsep}{net.parent}")
    rgb = picture(48, 64)
    data = icmcodec.encode(rgb, model="test-tiny-0", quality=1)
    out = icmcodec.decode(data)
    assert out.task == "recon" and out.rgb.shape == (48, 64, 3) and ".png" in out.files()
    png = Image.fromarray(rgb)
    assert icmcodec.encode(png, model="test-tiny-0", quality=1) == data
    import io

    buf = io.BytesIO()
    png.save(buf, format="PNG")
    assert icmcodec.encode(buf.getvalue(), model="test-tiny-0", quality=1) == data
    seg = icmcodec.encode(rgb, task="semseg", model="test-tiny-0", task_model="tiny-semseg", max_bytes=400)
    assert len(seg) <= 400
    res = icmcodec.decode(seg)
    assert res.output.shape == (48, 64) and set(res.files()) == {".semseg.png", ".semseg.json"}
    assert icmcodec.analyze(rgb, task="semseg", model="tiny-semseg").shape == (48, 64)
    with pytest.raises(icmcodec.UsageError):
        icmcodec.encode(rgb, model="test-tiny-0", quality=99)
    with pytest.raises(bitstream.BitstreamError):
        icmcodec.decode(b"not a file")
    with pytest.raises(ValueError):
        icmcodec.encode(np.zeros((4, 4, 4), np.float32), model="test-tiny-0")


def test_batched_analysis_codes_valid_files(folder, codec):
    pics = [picture(40, 56, seed=s) for s in range(3)] + [picture(70, 90, seed=9)]
    ans = codec.analyse_batch(pics)
    for rgb, an in zip(pics, ans):
        enc = codec.code(an, 1.0)
        z, y, _, _ = codec.decode_symbols(enc.chunks[0].data, enc.chunks[1].data, enc.coded_size, 1.0)
        np.testing.assert_array_equal(y, enc.symbols["y"])
        one = codec.code(codec.analyse(rgb), 1.0)
        assert (one.symbols["y"] != enc.symbols["y"]).mean() < 1e-3  # float rounding of a batch, at most
    r = icm("encode", folder / "in", "--out-dir", folder / "b", "--model", "test-tiny-0", "--batch", "4")
    assert r.exit_code == 0 and "12 ok" in r.output
    assert icm("decode", folder / "b", "--out-dir", folder / "bd").exit_code == 0
