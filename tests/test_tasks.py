"""Task metrics on hand-made inputs with known answers, and every output writer."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from icmcodec.tasks import metrics as M
from icmcodec.tasks import writers as W


def test_miou_perfect_wrong_missing_and_ignored():
    gt = np.array([[0, 0, 1, 1], [2, 2, 11, 11]])
    m = M.ConfusionMIoU(3, ignore_index=11)
    m.update(gt.copy(), gt)
    assert m.value() == 1.0
    m = M.ConfusionMIoU(3, ignore_index=11)
    m.update((gt + 1) % 3, gt)  # every labelled pixel wrong
    assert m.value() == 0.0
    m = M.ConfusionMIoU(4, ignore_index=11)  # class 3 never occurs: left out of the mean
    pred = np.array([[0, 0, 1, 0], [2, 2, 3, 3]])  # one class-1 pixel called 0; ignored pixels anything
    m.update(pred, gt)
    iou = m.per_class()
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == pytest.approx(1 / 2) and iou[2] == 1.0 and np.isnan(iou[3])
    assert m.value() == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_thinning_makes_one_pixel_lines():
    mask = np.zeros((9, 12), bool)
    mask[3:6, 1:11] = True  # a 3-pixel-thick bar
    t = M.thin(mask)
    assert t.sum() > 0 and t.sum() <= 10 and (t.sum(0) <= 1).all() and (t & ~mask).sum() == 0


def test_boundary_ods_known_cases():
    gt = np.zeros((40, 40), np.uint8)
    gt[20, 5:35] = 1
    ods = M.BoundaryODS(thresholds=9)
    ods.update(gt.astype(float), [gt])
    assert ods.value() == pytest.approx(1.0)
    shifted = np.zeros((40, 40))
    shifted[19, 5:35] = 1.0  # one pixel off: within 0.0075 * diag = 0.42 px? no -> missed
    ods = M.BoundaryODS(thresholds=9)
    ods.update(shifted, [gt])
    assert ods.value() == 0.0
    big = np.zeros((400, 400), np.uint8)
    big[200, 50:350] = 1
    near = np.zeros((400, 400))
    near[202, 50:350] = 0.8  # 2 px off, tolerance 0.0075 * 566 = 4.2 px
    ods = M.BoundaryODS(thresholds=9)
    ods.update(near, [big, big])
    assert ods.value() == pytest.approx(1.0)
    empty = M.BoundaryODS(thresholds=9)
    empty.update(np.zeros((40, 40)), [gt])  # nothing predicted: recall 0
    assert empty.value() == 0.0
    nogt = M.BoundaryODS(thresholds=9)
    nogt.update(np.zeros((40, 40)), [np.zeros((40, 40))])  # empty boundaries everywhere
    assert nogt.value() == 0.0


def test_one_to_one_matching():
    pred = np.zeros((10, 10), bool)
    pred[5, 5] = True
    gt = np.zeros((10, 10), bool)
    gt[5, 4:7] = True  # three GT pixels near one prediction: only one may match
    matched, n = M.match_count(pred, gt, 1.5)
    assert n == 1 and matched.sum() == 1


def test_top1_depth_normal_saliency():
    assert M.top1([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    gt = np.array([[1.0, 2.0], [0.0, 4.0]])  # 0 = invalid
    e = M.depth_errors(np.array([[1.0, 3.0], [9.0, 4.0]]), gt)
    assert e["rmse"] == pytest.approx(np.sqrt(1 / 3)) and e["absrel"] == pytest.approx(0.5 / 3)
    n = np.zeros((1, 2, 3))
    n[..., 2] = 1
    p = n.copy()
    p[0, 1] = [1, 0, 0]  # 90 degrees off
    assert M.mean_angular_error(p, n) == pytest.approx(45.0)
    assert M.mean_angular_error(n * 5, n) == pytest.approx(0.0, abs=1e-6)


def test_saliency_max_f_and_mae_by_hand():
    g = np.zeros((4, 4), bool)
    g[:2] = True
    s = M.SaliencyMaxF()
    s.update(g.astype(float), g)  # perfect
    assert s.value() == pytest.approx(1.0) and s.mae() == 0.0
    s = M.SaliencyMaxF()
    s.update(np.zeros((4, 4)), g)  # all zero: only threshold 0 predicts anything (all), P = 1/2, R = 1
    assert s.value() == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1)) and s.mae() == pytest.approx(0.5)
    # 8-bit then min-max stretched: 0.5 -> 128/255; thresholds 1..128 take both salient pixels
    s = M.SaliencyMaxF()
    s.update(np.array([[1.0, 0.5], [0.0, 0.0]]), np.array([[1, 1], [0, 0]]))
    assert s.value() == pytest.approx(1.0)
    assert s.curve()[0] == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))  # t = 255: one of two salient pixels
    assert s.mae() == pytest.approx((1 - 128 / 255) / 4)
    # the dataset curve is the mean of the pictures' curves (not pooled counts)
    s = M.SaliencyMaxF()
    s.update(g.astype(float), g)
    q = np.zeros((4, 4), bool)
    q[0] = True
    s.update(np.zeros((4, 4)), q)
    assert s.value() == pytest.approx(0.5)  # thresholds 1..255: (1 + 0) / 2
    assert s.curve()[-1] == pytest.approx((1.3 * 0.5 / 1.15 + 1.3 * 0.25 / 1.075) / 2)
    assert s.mae() == pytest.approx(0.125)


def open_png(data):
    return Image.open(io.BytesIO(data))


def test_semseg_writer_palette_ids_and_legend():
    ids = np.array([[0, 1], [10, 3]])
    names = [f"c{i}" for i in range(11)]
    pal = [(i * 20, 0, 255 - i * 20) for i in range(11)]
    out = W.write_semseg(ids, names, pal)
    im = open_png(out[".semseg.png"])
    assert im.mode == "P" and im.size == (2, 2) and np.asarray(im).tolist() == ids.tolist()
    assert im.getpalette()[30:33] == [200, 0, 55]
    legend = json.loads(out[".semseg.json"])
    assert legend["classes"][10] == {"id": 10, "name": "c10", "color": [200, 0, 55]}
    with pytest.raises(ValueError):
        W.write_semseg(np.array([[11]]), names, pal)


def test_depth_boundary_saliency_normal_cls_writers():
    d = np.array([[0.0, 1.2345], [10.0, 70.0]])
    out = W.write_depth(d)
    im = open_png(out[".depth.png"])
    assert im.mode.startswith("I") and np.asarray(im).tolist() == [[0, 1234], [10000, 65535]]
    assert W.read_depth_png(out[".depth.png"])[1, 0] == 10.0
    assert open_png(out[".depth.preview.png"]).mode == "RGB"
    b = open_png(W.write_boundary(np.array([[0.0, 0.5, 1.0]]))[".boundary.png"])
    assert b.mode == "L" and np.asarray(b).tolist() == [[0, 128, 255]]
    s = open_png(W.write_saliency(np.array([[1.2, -1]]))[".saliency.png"])
    assert np.asarray(s).tolist() == [[255, 0]]
    n = open_png(W.write_normal(np.array([[[0, 0, 2.0], [-1, 0, 0]]]))[".normal.png"])
    assert n.mode == "RGB" and np.asarray(n).tolist() == [[[128, 128, 255], [0, 128, 128]]]
    c = json.loads(W.write_cls(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"])[".cls.json"])
    assert c["label"] == "b" and c["score"] == 0.6 and [t["label"] for t in c["top5"]] == ["b", "c", "a"]


def test_folder_loaders(tmp_path):
    from scipy.io import savemat

    from icmcodec.tasks import datasets as D

    def img(path, size=(6, 4)):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(path)

    # CamVid / SegNet layout
    img(tmp_path / "cv" / "train" / "a.png")
    (tmp_path / "cv" / "trainannot").mkdir(parents=True)
    Image.fromarray(np.full((4, 6), 11, np.uint8)).save(tmp_path / "cv" / "trainannot" / "a.png")
    s = D.camvid(tmp_path / "cv", "train")
    assert len(s) == 1 and s[0].label.shape == (4, 6) and s[0].label.max() == 11 and s[0].image().shape == (4, 6, 3)
    # BSDS500 .mat with two annotators
    img(tmp_path / "bsds" / "images" / "val" / "1.jpg")
    (tmp_path / "bsds" / "groundTruth" / "val").mkdir(parents=True)
    b1, b2 = np.zeros((4, 6), np.uint8), np.eye(4, 6, dtype=np.uint8)
    gt = np.empty((1, 2), dtype=object)
    for i, b in enumerate((b1, b2)):
        gt[0, i] = {"Boundaries": b, "Segmentation": np.ones((4, 6), np.uint16)}
    savemat(tmp_path / "bsds" / "groundTruth" / "val" / "1.mat", {"groundTruth": gt})
    s = D.bsds500(tmp_path / "bsds", "val")
    labels = s[0].label.load()
    assert len(labels) == 2 and labels[1].tolist() == b2.tolist()
    # ImageFolder classes
    img(tmp_path / "cal" / "train" / "zebra" / "x.jpg")
    img(tmp_path / "cal" / "train" / "ant" / "y.jpg")
    s, classes = D.image_folder(tmp_path / "cal", "train")
    assert classes == ["ant", "zebra"] and [x.label for x in s] == [0, 1]
    # depth / normals / saliency
    img(tmp_path / "nyu" / "train" / "images" / "k.png")
    (tmp_path / "nyu" / "train" / "depth").mkdir()
    Image.fromarray(np.full((4, 6), 2500, np.uint16)).save(tmp_path / "nyu" / "train" / "depth" / "k.png")
    assert D.depth_folder(tmp_path / "nyu", "train")[0].label[0, 0] == 2.5
    (tmp_path / "nyu" / "train" / "normals").mkdir()
    n = np.zeros((4, 6, 3), np.uint8)
    n[0, 0] = (128, 128, 255)
    Image.fromarray(n).save(tmp_path / "nyu" / "train" / "normals" / "k.png")
    lab = D.normal_folder(tmp_path / "nyu", "train")[0].label
    assert lab[0, 0, 2] == pytest.approx(1.0, abs=1e-2) and (lab[1, 1] == 0).all()
    (tmp_path / "nyu" / "train" / "saliency").mkdir()
    Image.fromarray(np.eye(4, 6, dtype=np.uint8) * 255).save(tmp_path / "nyu" / "train" / "saliency" / "k.png")
    assert D.saliency_folder(tmp_path / "nyu", "train")[0].label.sum() == 4
    with pytest.raises(D.DatasetError, match="missing"):
        D.camvid(tmp_path / "cv", "val")


def test_greedy_matching_prefers_near_pairs_and_maximum_finds_the_most():
    # predictions at x = 1, 3 and edges at x = 2, 5: both predictions are 1 from x = 2;
    # the distance-1 pair (3, 2) is taken first, after which 1 has nothing left, while
    # the maximum matching pairs (1, 2) and (3, 5)
    pred = np.zeros((1, 8), bool)
    gt = np.zeros((1, 8), bool)
    pred[0, [1, 3]] = True
    gt[0, [2, 5]] = True
    m_g, n_g = M.match_count(pred, gt, 2.0, "greedy")
    m_m, n_m = M.match_count(pred, gt, 2.0, "maximum")
    assert n_m == 2 and m_m.sum() == 2
    assert n_g == 1 and m_g[0, 3] and not m_g[0, 1]
    with pytest.raises(ValueError, match="unknown matching"):
        M.match_count(pred, gt, 2.0, "nope")


def test_greedy_and_maximum_matching_agree_closely_on_random_edges():
    rng = np.random.default_rng(5)
    pred, gt = rng.random((60, 60)) < 0.05, rng.random((60, 60)) < 0.05
    _, n_g = M.match_count(pred, gt, 2.5, "greedy")
    _, n_m = M.match_count(pred, gt, 2.5, "maximum")
    assert n_g <= n_m and n_g >= 0.85 * n_m


def test_bsds_matching_is_the_benchmarks_own_and_not_below_greedy():
    """The BSDS code (through pyedgeeval) on hand-made cases: one exact pair, one pair
    within tolerance, nothing beyond it; on random edges it matches at least what the
    distance-ordered greedy matching does."""
    pytest.importorskip("pyEdgeEval._lib", reason="pyedgeeval (the bench extra) is not installed")
    pred = np.zeros((20, 20), bool)
    gt = np.zeros((20, 20), bool)
    pred[5, 5] = gt[5, 5] = True  # exact
    pred[10, 10], gt[10, 12] = True, True  # 2 pixels apart
    pred[15, 2], gt[2, 17] = True, True  # far apart
    m, n = M.match_count(pred, gt, 2.5, "bsds")
    assert n == 2 and m[5, 5] and m[10, 10] and not m[15, 2]
    m, n = M.match_count(pred, gt, 1.5, "bsds")
    assert n == 1 and m[5, 5] and not m[10, 10]
    rng = np.random.default_rng(6)
    pred, gt = rng.random((60, 60)) < 0.05, rng.random((60, 60)) < 0.05
    assert M.match_count(pred, gt, 2.5, "bsds")[1] >= M.match_count(pred, gt, 2.5, "greedy")[1]


def test_writer_suffix_table_matches_the_writers():
    import numpy as np

    from icmcodec.tasks.registry import TASKS
    from icmcodec.tasks.writers import SUFFIXES, write_recon

    outputs = {"semseg": np.zeros((4, 4), np.uint8), "boundary": np.zeros((4, 4)), "saliency": np.zeros((4, 4)),
               "depth": np.ones((4, 4)), "normal": np.dstack([np.zeros((4, 4))] * 2 + [np.ones((4, 4))]),
               "cls": None}
    assert tuple(write_recon(np.zeros((4, 4, 3), np.uint8))) == SUFFIXES["recon"]
    for name, spec in TASKS.items():
        out = outputs[name] if name != "cls" else np.array([0.7, 0.3])
        labels = ["a", "b"] if name == "cls" else spec.labels
        assert tuple(spec.write(out, labels)) == SUFFIXES[name], name


@pytest.mark.parametrize("task", ["semseg", "boundary", "cls", "depth", "normal", "saliency"])
def test_metric_totals_of_pictures_add_up_to_the_whole(task):
    """Stored per-picture totals, added back, give the accumulator of all pictures (what
    lets a benchmark resume), and totals of another kind are refused."""
    from icmcodec.tasks.metrics import add_totals, totals
    from icmcodec.tasks.registry import task as task_spec

    spec = task_spec(task)
    rng = np.random.default_rng(0)
    labels = [f"c{i}" for i in range(11)] if task in ("semseg", "cls") else None

    def sample():
        if task == "semseg":
            return rng.integers(0, 11, (8, 8)), rng.integers(0, 12, (8, 8))
        if task == "boundary":
            return rng.random((16, 16)), [rng.random((16, 16)) > 0.8 for _ in range(2)]
        if task == "cls":
            return rng.random(11), int(rng.integers(11))
        if task == "depth":
            return rng.random((8, 8)) + 0.5, rng.random((8, 8)) + 0.5
        if task == "normal":
            return rng.normal(size=(8, 8, 3)), rng.normal(size=(8, 8, 3))
        return rng.random((8, 8)), rng.random((8, 8)) > 0.5

    pics = [sample() for _ in range(3)]
    whole, parts = spec.metric(labels), spec.metric(labels)
    for out, lab in pics:
        whole.update(out, lab)
        one = spec.metric(labels)
        one.update(out, lab)
        add_totals(parts, json.loads(json.dumps(totals(one))))  # through JSON, as stored
    assert parts.value() == pytest.approx(whole.value(), rel=1e-12)
    with pytest.raises(ValueError):
        add_totals(parts, {"nothing": 0})
