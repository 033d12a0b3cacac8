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
    subprocess.run([sys.executable, "-m", "icmcodec.zoo.export", str(run / "last.pt"), str(model_dir),
                    "--name", "t"], check=True, capture_output=True)
    codec = pipeline.load_codec(str(model_dir), device="cpu")
    rgb = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    assert pipeline.decode_bytes(pipeline.encode_image(rgb, quality=0.5, codec=codec), codec=codec).rgb.shape == rgb.shape
