"""The command line: files, folders, pipes, exit codes, one-line errors, no debris."""
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from icmcodec.methods.hyperprior.tiny import write_tiny_model

MODEL = "test-tiny-0"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    models = tmp_path / "models"
    write_tiny_model(models / "tiny")
    monkeypatch.setenv("ICM_MODEL_PATH", str(models))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def picture(path, size=(40, 30), mode="RGB"):
    rng = np.random.default_rng(len(str(path)))
    a = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(a, "RGB").convert(mode).save(path)
    return path


def icm(*args, input=None):
    return CliRunner().invoke(main, list(map(str, args)), input=input)


def test_encode_decode_single(env):
    picture(env / "a.png")
    r = icm("encode", "a.png", "--model", MODEL, "--quality", "1.5")
    assert r.exit_code == 0, r.output
    assert "bpp" in r.output and (env / "a.icm").exists()
    r = icm("decode", "a.icm", "-o", "b.png")
    assert r.exit_code == 0, r.output
    im = Image.open(env / "b.png")
    assert im.mode == "RGB" and im.size == (40, 30)
    r = icm("info", "a.icm", "--json")
    d = json.loads(r.output)
    assert d["task"] == "recon" and d["width"] == 40 and d["quality"] == 1.5
    assert d["bpp"] == pytest.approx(8 * (env / "a.icm").stat().st_size / 1200, abs=1e-5)


def test_folder_batch_keeps_relative_paths_and_survives_bad_files(env):
    (env / "in" / "sub").mkdir(parents=True)
    picture(env / "in" / "x.png")
    picture(env / "in" / "sub" / "y.jpg")
    (env / "in" / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = icm("encode", "in", "--out-dir", "out", "--model", MODEL)
    assert r.exit_code == 1
    assert (env / "out" / "x.icm").exists() and (env / "out" / "sub" / "y.icm").exists()
    assert "broken.png" in r.output and "2 ok, 1 failed" in r.output
    assert sorted(p.name for p in (env / "out").rglob("*")) == ["sub", "x.icm", "y.icm"]
    r = icm("decode", "out", "--out-dir", "dec")
    assert r.exit_code == 0, r.output
    assert (env / "dec" / "sub" / "y.png").exists()


def test_stdin_list_and_stdout(env):
    picture(env / "p.png")
    picture(env / "q.png")
    r = icm("encode", "-", "--out-dir", "o", "--model", MODEL, input="p.png\nq.png\n")
    assert r.exit_code == 0, r.output
    assert (env / "o" / "p.icm").exists() and (env / "o" / "q.icm").exists()
    r = CliRunner().invoke(main, ["encode", "p.png", "-o", "-", "--model", MODEL])
    assert r.exit_code == 0
    assert r.stdout_bytes == (env / "o" / "p.icm").read_bytes()
    r = CliRunner().invoke(main, ["decode", "-", "-o", "fromstdin.png"], input=r.stdout_bytes)
    assert r.exit_code == 0, r.output
    assert Image.open(env / "fromstdin.png").size == (40, 30)


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "version", "size"])
def test_damaged_file_exit_2_and_no_output(env, damage):
    picture(env / "a.png")
    icm("encode", "a.png", "--model", MODEL)
    data = bytearray((env / "a.icm").read_bytes())
    if damage == "truncate":
        data = data[:-7]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "magic":
        data[0] = ord("I")
    elif damage == "version":
        data[8] = 9
    else:  # absurd size with a valid checksum
        struct.pack_into("<II", data, 36, 1 << 30, 1 << 30)
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    (env / "bad.icm").write_bytes(bytes(data))
    r = icm("decode", "bad.icm")
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("icm: error: bad.icm:")
    assert "Traceback" not in r.output
    assert sorted(os.listdir(env)) == ["a.icm", "a.png", "bad.icm"]


def test_usage_errors(env):
    picture(env / "a.png")
    picture(env / "b.png")
    assert icm("encode", "a.png", "b.png", "-o", "x.icm", "--model", MODEL).exit_code == 2
    assert icm("encode", "a.png", "--model", "no-such-model").exit_code == 2
    r = icm("encode", "a.png", "--model", MODEL, "--quality", "9")
    assert r.exit_code == 2 and "outside" in r.output
    r = icm("encode", "missing.png", "--model", MODEL)
    assert r.exit_code == 2 and "no such file" in r.output
    assert icm("info", "a.png").exit_code == 2


def test_models_json(env):
    r = icm("models", "--json")
    rows = json.loads(r.output)
    tiny = [m for m in rows if m["name"] == MODEL][0]
    assert tiny["task"] == "recon" and tiny["method"] == "hyperprior"
    assert tiny["quality_range"] == [0.0, 2.0] and tiny["params"] > 1000 and tiny["bytes"] > 0


def test_real_process_no_traceback(env):
    (env / "bad.icm").write_bytes(b"\x89ICM\r\n\x1a\n\x01")
    p = subprocess.run([sys.executable, "-m", "cli.main", "decode", "bad.icm"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1
    p = subprocess.run([sys.executable, "-m", "cli.main", "info", "bad.icm"], capture_output=True, text=True)
    assert p.returncode == 2 and "ends inside the header" in p.stderr
