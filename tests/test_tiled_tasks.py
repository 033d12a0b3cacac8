"""Large pictures in tiles beyond the codecs' transforms (issue 24): dense task networks
in overlapping tiles, post-processed per tile, and Prompt-ICM's extractor, feature
codec and task decoder in tiles."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bitstream
from icmcodec import pipeline
from icmcodec.imageio import load_rgb
from icmcodec.methods.prompt_icm.codec import FeatureTiling
from icmcodec.tasks import tiled
from icmcodec.tasks.registry import task

EXAMPLE = Path(__file__).parent.parent / "examples" / "caltech_ketch.jpg"


def photo(h, w):
    """The example picture stretched to h x w: real content, any size."""
    return np.asarray(Image.fromarray(load_rgb(EXAMPLE)).resize((w, h), Image.BILINEAR))


def test_padded_tile_is_the_edge_padded_picture():
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    whole = np.pad(rgb, ((0, 27), (0, 11), (0, 0)), mode="edge")
    for y0, y1, x0, x1 in ((0, 64, 0, 64), (32, 64, 16, 64), (0, 37, 0, 53), (10, 20, 40, 60)):
        np.testing.assert_array_equal(tiled.padded_tile(rgb, y0, y1, x0, x1), whole[y0:y1, x0:x1])


@pytest.mark.parametrize("name", ["semseg", "boundary", "saliency"])
def test_tiles_of_a_local_network_are_the_whole_picture_exactly(name):
    """With a network whose reach the halo covers, tiling changes nothing: the stitching
    and the per-tile post-processing (the boundary task's NMS reads 8 pixels around and
    ramps the picture's own edges) give the whole picture's output bit for bit."""
    spec = task(name)
    rng = np.random.default_rng(1)
    h, w = 150, 230
    grid = (160, 256)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    big = tiled.padded_tile(rgb, 0, grid[0], 0, grid[1]).astype(np.float64)
    kernel = rng.normal(size=(spec.out_channels, 3, 3, 3))

    def local(y0, y1, x0, x1):  # a 3x3 conv, zero padding at the span's edges
        x = np.pad(big[y0:y1, x0:x1], ((1, 1), (1, 1), (0, 0)))
        return np.einsum("yxcij,kcij->kyx", np.lib.stride_tricks.sliding_window_view(x, (3, 3), (0, 1)), kernel) / 300

    whole = spec.postprocess(local(0, grid[0], 0, grid[1])[:, :h, :w])
    out = tiled.predict_tiled(local, (h, w), grid, spec.postprocess, tile=64, halo=32, align=32, margin=16)
    assert out.shape == whole.shape and out.dtype == whole.dtype
    np.testing.assert_array_equal(out, whole)
    with pytest.raises(ValueError):
        tiled.predict_tiled(local, (h, w), grid, spec.postprocess, tile=64, halo=0, align=32)


def test_the_shipped_segmentation_network_in_tiles_agrees_with_one_run():
    """Its stages see far beyond any tile's halo, so tiles are close, not equal: on a
    1280x320 picture at least 97 % of pixels get the class of one whole run (the
    3840x2160 figure is in benchmarks/results/large.json)."""
    net = pipeline.load_tasknet("semseg", device="cpu")
    rgb = photo(320, 1280)
    assert net.tiled(rgb)  # over one tile: predict runs in tiles
    with torch.no_grad():
        whole = net.spec.postprocess(net.net(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255)[0].numpy())
    out = net.predict([rgb])[0]
    assert out.shape == (320, 1280) and out.dtype == np.uint8
    assert (out == whole).mean() >= 0.97, (out == whole).mean()


@pytest.fixture(scope="module")
def picm():
    codec = pipeline.load_codec("picm-lite0", device="cpu")
    return codec.bound(pipeline.load_adapter(codec, "semseg"))


def with_tiling(codec, tiling):
    import copy

    c = copy.copy(codec)
    c.feature_tiling = tiling
    return c


def test_prompt_icm_in_tiles_codes_the_whole_runs_symbols(picm):
    """The extractor and selector (halo over their 184-pixel reach), g_a and g_s (over
    theirs) in small tiles against one run: the same z, y symbols within float rounding
    at a seam, features within float tolerance; the task decoder in tiles agrees with
    its whole run on nearly every pixel."""
    rgb = photo(300, 1100)
    whole = with_tiling(picm, FeatureTiling(extractor=4096, analysis=4096, synthesis=4096, task_whole=4096))
    small = with_tiling(picm, FeatureTiling(extractor=256, analysis=32, synthesis=8, task=256))
    a, b = whole.analyse(rgb), small.analyse(rgb)
    torch.testing.assert_close(a.f, b.f, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.m, b.m, rtol=1e-4, atol=1e-4)
    ea, eb = whole.code(a, 1.0), small.code(b, 1.0)
    assert (ea.symbols["z"] != eb.symbols["z"]).mean() < 1e-3
    assert (ea.symbols["y"] != eb.symbols["y"]).mean() < 1e-3
    data = pipeline.encode_image(rgb, task="semseg", quality=1.0, codec=whole)
    c = bitstream.unpack(data)
    z, y = whole.payloads(c.chunks)
    coded = (c.header.coded_height, c.header.coded_width)
    fa, fb = whole.decode_features(z, y, coded, 1.0), small.decode_features(z, y, coded, 1.0)
    torch.testing.assert_close(fa, fb, rtol=1e-4, atol=1e-3)
    oa = whole.decode_chunks(c.header, c.chunks)
    ob = small.decode_chunks(c.header, c.chunks)
    assert oa.shape == ob.shape == (300, 1100) and (oa == ob).mean() >= 0.97, (oa == ob).mean()


def test_a_tiled_prompt_icm_file_round_trips_exactly(picm):
    """Whatever the tiles, a file decodes to the symbols it was coded from."""
    small = with_tiling(picm, FeatureTiling(extractor=256, analysis=32, synthesis=8, task=256, task_whole=256))
    rgb = photo(200, 700)
    an = small.analyse(rgb)
    enc = small.code(an, 0.5)
    z, y = enc.chunks[0].data, enc.chunks[1].data
    z_sym, y_sym, _, _ = small.decode_symbols(z, y, enc.coded_size, 0.5)
    np.testing.assert_array_equal(z_sym, enc.symbols["z"])
    np.testing.assert_array_equal(y_sym, enc.symbols["y"])
    data = pipeline.encode_image(rgb, task="semseg", quality=0.5, codec=small, analysis=an)
    out = pipeline.decode_bytes(data, codec=small)
    assert out.output.shape == (200, 700) and set(out.files()) == {".semseg.png", ".semseg.json"}
