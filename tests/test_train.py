"""Training: a few steps at world size 1 under torch.distributed (gloo), resume, export."""
import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
from PIL import Image

from icmcodec import pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run([sys.executable, "-m", "icmcodec.train", *args], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stderr


def test_train_distributed_resume_export(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((72, 80, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    run = tmp_path / "run"
    cfg = json.dumps({"N": 8, "M": 8, "Nz": 4, "Nh": 8, "levels": 2, "lambdas": [0.01, 0.05]})
    dist_env = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port())}
    common = ["--run", str(run), "--batch", "2", "--crop", "64", "--ckpt-every", "2", "--threads", "1"]
    out = train(common + ["--data", f"{data}:1", "--val", str(data), "--val-every", "2", "--steps", "2",
                          "--config", cfg], dist_env)
    assert "val L0:" in out
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["model"]["M"] == 8 and saved["args"]["steps"] == 2
    out = train(["--run", str(run), "--resume", "--steps", "4"])
    assert "resumed at step 2" in out
    rows = list(csv.reader(open(run / "log.csv")))
    assert rows[0][:3] == ["step", "lr", "loss"] and rows[-1][0] == "4"
    assert len(open(run / "val.csv").read().splitlines()) == 4  # 2 levels x 2 validations
    model_dir = tmp_path / "model"
    subprocess.run([sys.executable, "-m", "icmcodec.export", str(run / "last.pt"), str(model_dir),
                    "--name", "t"], check=True, capture_output=True)
    codec = pipeline.load_codec(str(model_dir), device="cpu")
    rgb = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    assert pipeline.decode_bytes(pipeline.encode_image(rgb, quality=0.5, codec=codec), codec=codec).rgb.shape == rgb.shape


def test_init_keeps_the_architecture_of_the_warm_start(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(data / "a.png")
    common = ["--data", str(data), "--batch", "1", "--crop", "64", "--threads", "1", "--steps", "1"]
    cfg = json.dumps({"N": 8, "M": 12, "Nz": 4, "Nh": 8, "levels": 2, "lambdas": [0.01, 0.05]})
    train(common + ["--run", str(tmp_path / "a"), "--config", cfg])
    # no --config: the architecture comes from the checkpoint, not HyperpriorConfig's defaults
    out = train(common + ["--run", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "last.pt")])
    assert "initialised from" in out
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["model"]["M"] == 12


def test_time_budget_lowers_steps_and_stops_refitting_once_decay_starts(monkeypatch):
    from icmcodec import train as train_mod

    clock = [1000.0]
    monkeypatch.setattr(train_mod.time, "time", lambda: clock[0])
    budget = train_mod.TimeBudget(minutes=10, first_step=0, skip=5, window=10)  # ends at t = 1600
    steps = 10_000
    for step in range(1, 200):
        clock[0] += 0.5 if step <= 5 else 1.0  # slow warm-up, then 1 s per step
        steps = budget.fit(step, steps)
    # at step 15 (first fit) 585 s remain: 15 + 0.95 * 585 = 570; later fits agree closely
    assert 560 <= steps <= 575
    before = steps
    clock[0] += 2000  # past the decay start, a slowdown no longer moves the end
    assert budget.fit(int(0.8 * steps) // 10 * 10 + 5, steps) == before
    assert budget.fit(steps + 100, steps) == before


def test_train_only_the_gains_of_a_new_level(tmp_path):
    """--train-only log2_gain --sample-levels 2 on a warm start with one level added:
    only the new level's gain vector moves; every other tensor, the old levels' gains
    included, is exactly the warm start's."""
    import torch

    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(data / "a.png")
    common = ["--data", str(data), "--batch", "1", "--crop", "64", "--threads", "1"]
    cfg = {"N": 8, "M": 12, "Nz": 4, "Nh": 8, "levels": 2, "lambdas": [0.01, 0.05]}
    train(common + ["--run", str(tmp_path / "a"), "--steps", "1", "--config", json.dumps(cfg)])
    more = json.dumps({"levels": 3, "lambdas": [0.01, 0.05, 0.25]})
    train(common + ["--run", str(tmp_path / "b"), "--steps", "3", "--init", str(tmp_path / "a" / "last.pt"),
                    "--config", more, "--train-only", "log2_gain", "--sample-levels", "2"])
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert sorted(a) == sorted(b)
    for k in a:
        if k != "log2_gain":
            assert torch.equal(a[k], b[k]), k
    old, new = a["log2_gain"], b["log2_gain"]
    assert torch.equal(new[:2], old)
    start = old[0] + 2 * (old[1] - old[0])  # log-linear extrapolation to 0.25 (two steps of x5)
    assert not torch.allclose(new[2], start, atol=0, rtol=0)
    assert (new[2] - start).abs().max() < 0.1  # a few small Adam steps from the extrapolated start


def test_warmup_ramps_linearly_and_zero_starts_at_the_full_rate():
    from icmcodec.train import lr_at

    assert lr_at(0, 1000, 1e-3, warmup=0) == 1e-3
    assert lr_at(49, 1000, 1e-3, warmup=100) == 5e-4
    assert lr_at(100, 1000, 1e-3, warmup=100) == 1e-3  # flat until the decay starts at 70 %
    assert abs(lr_at(999, 1000, 1e-3, warmup=0) - 1e-3 / 20) < 1e-6  # cosine down to base / 20
    assert lr_at(400, 1000, 1e-3) < 1e-3  # the default keeps the 500-step ramp
