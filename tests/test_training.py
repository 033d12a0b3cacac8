"""The training toolkit (icmcodec.training): checkpoints, the data spec, the schedule, resume."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from icmcodec import training
from icmcodec.training import CropSampler, Run, lr_at, parse_data, rd_bpp


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name not in ("last.pt", "train_config.json"))


def test_atomic_save_replaces_and_leaves_no_temporary_file(tmp_path):
    run = Run(tmp_path / "run")
    run.save({"step": 1, "w": torch.ones(3)})
    run.save({"step": 2, "w": torch.zeros(3)})
    assert run.load()["step"] == 2
    assert leftovers(run.dir) == []


class Interrupted:
    """Pickling this raises: a save stopped half-way (Ctrl-C, a full disk)."""

    def __reduce__(self):
        raise KeyboardInterrupt


def test_a_failed_save_keeps_the_good_checkpoint_and_cleans_up(tmp_path):
    run = Run(tmp_path)
    run.save({"step": 5, "w": torch.arange(4.0)})
    with pytest.raises(KeyboardInterrupt):
        run.save({"step": 6, "w": torch.zeros(1 << 16), "z": Interrupted()})
    ck = run.load()
    assert ck["step"] == 5 and torch.equal(ck["w"], torch.arange(4.0))
    assert leftovers(tmp_path) == []


def test_a_killed_save_never_replaces_a_good_checkpoint(tmp_path):
    """SIGKILL after the new file is written, before it is renamed: last.pt is the old
    one; the orphaned temporary file is removed when the run folder is opened again."""
    script = textwrap.dedent(f"""
        import os, signal, torch
        from icmcodec.training import Run
        run = Run({str(tmp_path)!r})
        run.save({{"step": 3}})
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        run.save({{"step": 4, "w": torch.zeros(1000)}})
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert p.returncode == -9, p.stderr
    assert [n for n in leftovers(tmp_path) if n.endswith(".part")]  # the killed save's file
    run = Run(tmp_path)
    assert run.load()["step"] == 3
    assert leftovers(tmp_path) == []


def test_data_spec_weights_and_one_clear_message_for_a_bad_one():
    assert parse_data(["a"]) == [("a", 1.0)]
    assert parse_data(["a:4", "b/c:0.5", "d"]) == [("a", 4.0), ("b/c", 0.5), ("d", 1.0)]
    assert parse_data("/data/x:2") == [("/data/x", 2.0)]
    assert parse_data(["/mnt/c:d/photos"]) == [("/mnt/c:d/photos", 1.0)]  # a colon in a path is no weight
    for bad in ("a:zero", "a:0", "a:-1", "a:nan", "a:inf", ":2", "a:"):
        with pytest.raises(SystemExit) as e:
            parse_data(["ok:1", bad])
        msg = str(e.value)
        assert msg.startswith(f"error: --data {bad}:") and "DIR:WEIGHT" in msg and "\n" not in msg


def test_lr_warmup_and_decay_at_known_steps():
    # icmcodec.train: 500-step ramp, flat, cosine over the last 30 % to base / 20
    assert lr_at(0, 1000, 1e-3, warmup=100) == pytest.approx(1e-5)
    assert lr_at(49, 1000, 1e-3, warmup=100) == 5e-4
    assert lr_at(99, 1000, 1e-3, warmup=100) == 1e-3
    assert lr_at(699, 1000, 1e-3, warmup=100) == 1e-3
    assert lr_at(850, 1000, 1e-3, warmup=100) == pytest.approx(1e-3 / 20 + (1e-3 - 1e-3 / 20) * 0.5)
    assert lr_at(1000, 1000, 1e-3, warmup=100) == pytest.approx(1e-3 / 20)
    assert lr_at(0, 1000, 1e-3) == pytest.approx(2e-6)  # the default 500-step ramp
    # task networks: warm-up, then cosine to 0 from its end
    assert lr_at(9, 100, 1.0, 10, decay_start=10, floor=0.0) == 1.0
    assert lr_at(55, 100, 1.0, 10, decay_start=10, floor=0.0) == pytest.approx(0.5)
    # prompt sets: warm-up over 100 steps times a cosine from step 0
    assert lr_at(49, 1000, 1.0, 100, decay_start=0, floor=0.0) == pytest.approx(0.5 * 0.5 * (1 + math.cos(
        math.pi * 49 / 1000)))
    # the Prompt-ICM codec: a tenth from 80 %
    assert lr_at(799, 1000, 1.0, 0, decay_start=800, floor=0.1, shape="step") == 1.0
    assert lr_at(800, 1000, 1.0, 0, decay_start=800, floor=0.1, shape="step") == 0.1


def test_resume_continues_the_step_count(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    run = Run(tmp_path / "r")
    assert run.resume(("model", net), ("opt", opt)) == (0, None)  # nothing yet: from step 0
    for _ in range(7):
        opt.zero_grad()
        net(torch.ones(1, 3)).sum().backward()
        opt.step()
    run.save({"model": net.state_dict(), "opt": opt.state_dict(), "aux_opt": None, "step": 7})

    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    aux = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    step, ck = Run(tmp_path / "r").resume(("model", net2), ("opt", opt2), ("aux_opt", aux))
    assert step == 7 and ck["step"] == 7
    assert torch.equal(net2.weight, net.weight)
    assert opt2.state_dict()["state"][0]["step"] == 7  # Adam's own count continues too


def test_run_config_round_trip_and_a_clear_error_without_one(tmp_path):
    run = Run(tmp_path / "cfg")
    with pytest.raises(SystemExit, match="not a run folder"):
        run.read_config()
    run.write_config({"args": {"steps": 3}})
    assert run.read_config() == {"args": {"steps": 3}}


def test_crop_sampler_reads_specs_and_rd_bpp_counts_bits(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, v in ((a, 0), (b, 255)):
        d.mkdir()
        Image.fromarray(np.full((40, 48, 3), v, np.uint8)).save(d / "x.png")
    s = CropSampler([f"{a}:1", f"{b}:3"], 32, seed=0, quiet=True)
    x = s.batch(400)
    assert x.shape == (400, 3, 32, 32) and x.dtype == torch.float32
    assert 0.65 < float((x.flatten(1)[:, 0] == 1).float().mean()) < 0.85  # b drawn 3 times as often
    out = {"y_lik": torch.full((2, 4, 2, 2), 0.5), "z_lik": torch.full((2, 1, 1, 1), 0.25)}
    assert torch.equal(rd_bpp(out, torch.zeros(2, 3, 8, 8)), torch.full((2,), 18 / 64))
    assert torch.equal(rd_bpp(out, 64), rd_bpp(out, torch.zeros(1, 3, 8, 8)))


def test_device_choice():
    assert training.pick_device("cpu").type == "cpu"
    assert training.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            training.pick_device("cuda")


def _pictures(folder, n=2, size=64):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray((rng.random((size, size + 8, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_prompt_set_trainer_runs_resumes_and_exports(tmp_path, monkeypatch):
    """methods.transtic.train on the toolkit: run folder, atomic last.pt, resume, log."""
    from conftest import write_tiny_tasknet

    from icmcodec.methods.transtic.tiny import write_tiny_transtic_model
    from icmcodec.methods.transtic.train import main as train

    m = tmp_path / "models"
    write_tiny_transtic_model(m / "tt")
    write_tiny_tasknet(m / "seg", "semseg", name="tiny-semseg")
    monkeypatch.setenv("ICM_MODEL_PATH", str(m))
    data = _pictures(tmp_path / "imgs")
    run = tmp_path / "run"
    args = ["--run", str(run), "--base", str(m / "tt"), "--task", "semseg", "--task-model", "tiny-semseg",
            "--data", f"{data}:2", "--batch", "1", "--crop", "64", "--ckpt-every", "1", "--device", "cpu"]
    with pytest.raises(SystemExit, match="--data .*:x: expected DIR or DIR:WEIGHT"):
        train(args[:-8] + ["--data", f"{data}:x", "--steps", "1"])
    train(args + ["--steps", "1"])
    train(["--run", str(run), "--resume", "--steps", "2", "--device", "cpu"])
    assert training.load_checkpoint(run / "last.pt")["step"] == 2
    assert leftovers(run) == ["log.csv"]
    train(["--run", str(run), "--export", str(m / "ps"), "--name", "ps"])
    assert (m / "ps" / "model.safetensors").is_file()


def test_context_entropy_fit_runs_and_resumes(tmp_path):
    from icmcodec.methods.context.fit_entropy import main as fit
    from icmcodec.methods.hyperprior.tiny import write_tiny_model

    base = write_tiny_model(tmp_path / "hp")
    data = _pictures(tmp_path / "imgs")
    run = tmp_path / "run"
    args = ["--init", str(base), "--data", str(data), "--run", str(run), "--crops", "2", "--crop", "64",
            "--batch", "2", "--slices", "8,8", "--hidden", "8", "--val-every", "2"]
    fit(args + ["--steps", "2"])
    fit(args + ["--steps", "3", "--resume"])
    ck = training.load_checkpoint(run / "last.pt")
    assert ck["step"] == 3 and ck["method"] == "context"
