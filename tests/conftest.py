"""Shared fixtures: tiny task networks (random weights, seeded) written as zoo folders."""
import pytest

from icmcodec.tasks.backbone import TINY_PVT as TINY_BACKBONE


def write_tiny_tasknet(folder, task, labels=None, seed=0, name=None):
    """A task network folder with a seeded random tiny backbone; returns its config."""
    import torch

    from icmcodec.tasks.predict import build_net, save_tasknet
    from icmcodec.tasks.registry import task as spec_of

    spec = spec_of(task)
    config = {"kind": "tasknet", "name": name or f"tiny-{task}", "task": task, "backbone": "icm_pvt_nano",
              "backbone_args": TINY_BACKBONE, "head": {"dim": 8} if spec.kind == "dense" else {},
              "labels": list(labels) if labels else (list(spec.labels) if spec.labels else None),
              "input": {"resize_short": 36, "crop": 32} if spec.kind == "global" else {"scale": 1.0}}
    torch.manual_seed(seed)
    net = build_net(config)
    save_tasknet(net.state_dict(), config, folder)
    return config


@pytest.fixture()
def tasknet_dir(tmp_path):
    def make(task, **kw):
        folder = tmp_path / "models" / f"tiny-{task}"
        write_tiny_tasknet(folder, task, **kw)
        return folder
    return make


def slow_icm(seconds: float, before_main: str = "") -> str:
    """Python source of an ``icm`` whose every picture takes ``seconds`` longer to
    encode (so a test can kill it mid-batch, or overlap two workers); ``before_main``
    runs just before the command line is parsed."""
    return f"""
import os, sys, time
from icmcodec import pipeline
orig = pipeline.encode_image
def slow(*a, **k):
    time.sleep({seconds})
    return orig(*a, **k)
pipeline.encode_image = slow
from cli.main import main
{before_main}
main(sys.argv[1:])
"""
