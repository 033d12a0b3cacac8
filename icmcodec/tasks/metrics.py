"""Task metrics, numpy only, each checked in the tests on inputs with known answers.

* ``ConfusionMIoU``: semantic segmentation mIoU from an accumulated confusion matrix;
  pixels labelled ``ignore_index`` are left out; classes that never occur in the
  ground truth nor the prediction are left out of the mean.
* ``BoundaryODS``: the BSDS500 boundary benchmark's ODS F-measure. For each threshold
  the binarised prediction is thinned, then matched one-to-one to each annotator's
  boundary pixels within ``0.0075 * diagonal`` (maximum bipartite matching, where the
  BSDS code uses a min-cost assignment with the same tolerance); a predicted pixel is
  correct if it matches any annotator, recall counts every annotator's pixels. Counts
  are summed over the dataset and the best F over thresholds is reported.
* ``top1``, ``depth_errors`` (RMSE and AbsRel over valid pixels), ``mean_angular_error``
  (degrees, surface normals) and ``SaliencyMaxF`` (max F-beta, beta^2 = 0.3, over 256
  thresholds on the mean of the pictures' F curves, and MAE, as the saliency
  literature's evaluation code computes them).
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree


def totals(acc) -> dict:
    """The sums an accumulator keeps (its ``TOTALS``), as JSON-ready numbers and lists.

    Every accumulator here is a sum over pictures, so the totals of one picture can be
    stored and added back later (:func:`add_totals`): that is how a long benchmark run
    resumes without redoing finished pictures."""
    return {k: np.asarray(getattr(acc, k)).tolist() for k in acc.TOTALS}


def add_totals(acc, t: dict) -> None:
    """Add stored totals (:func:`totals`) into an accumulator of the same kind."""
    if set(t) != set(acc.TOTALS):
        raise ValueError(f"totals {sorted(t)} do not fit a {type(acc).__name__} ({sorted(acc.TOTALS)})")
    for k in acc.TOTALS:
        cur = getattr(acc, k)
        if isinstance(cur, np.ndarray):
            add = np.asarray(t[k], dtype=cur.dtype)
            if add.shape != cur.shape:
                raise ValueError(f"totals {k}: shape {add.shape}, expected {cur.shape}")
            cur += add
        else:
            setattr(acc, k, cur + type(cur)(t[k]))


class ConfusionMIoU:
    TOTALS = ("conf",)

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.n = num_classes
        self.ignore = ignore_index
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
        keep = (gt >= 0) & (gt < self.n) if self.ignore is None else (gt != self.ignore) & (gt >= 0) & (gt < self.n)
        p = np.clip(pred[keep], 0, self.n - 1)
        self.conf += np.bincount(gt[keep].astype(np.int64) * self.n + p, minlength=self.n**2).reshape(self.n, self.n)

    def per_class(self) -> np.ndarray:
        tp = np.diag(self.conf).astype(np.float64)
        denom = self.conf.sum(0) + self.conf.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def value(self) -> float:
        iou = self.per_class()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to one-pixel-wide lines."""
    img = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(img, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            n = sum(x.astype(np.int8) for x in p)
            seq = p + [p[0]]
            a = sum(((~seq[i]) & seq[i + 1]).astype(np.int8) for i in range(8))
            if step == 0:
                c1, c2 = p[0] & p[2] & p[4], p[2] & p[4] & p[6]
            else:
                c1, c2 = p[0] & p[2] & p[6], p[0] & p[4] & p[6]
            kill = img & (n >= 2) & (n <= 6) & (a == 1) & ~c1 & ~c2
            if kill.any():
                img &= ~kill
                changed = True
        if not changed:
            return img[1:-1, 1:-1]


def _maximum_match(pp: np.ndarray, gp: np.ndarray, max_dist: float) -> np.ndarray:
    """Maximum bipartite matching; returns the matched GT index per predicted pixel (-1: none)."""
    pairs = cKDTree(gp).sparse_distance_matrix(cKDTree(pp), max_dist, output_type="coo_matrix").tocsr()
    pairs.data[:] = 1  # an edge for every pair in range (distance 0 included)
    pairs.eliminate_zeros()
    # rows = GT pixels: scipy's Hopcroft-Karp is several times faster this way round
    return maximum_bipartite_matching(pairs, perm_type="row")  # per predicted pixel (column): its GT row


def _greedy_match(pred: np.ndarray, gt: np.ndarray, pp: np.ndarray, max_dist: float) -> np.ndarray:
    """Matching in order of distance: every pair at distance 0 first, then 1, sqrt(2), ...
    (ties broken by position). Returns the matched GT flat index per predicted pixel."""
    r = int(np.floor(max_dist))
    h, w = gt.shape
    gid = np.full((h + 2 * r, w + 2 * r), -1, dtype=np.int64)
    gy, gx = np.nonzero(gt)
    gid[gy + r, gx + r] = gy * w + gx
    offsets = sorted(((dy * dy + dx * dx, dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                      if dy * dy + dx * dx <= max_dist * max_dist))
    match = np.full(len(pp), -1, dtype=np.int64)
    taken = np.zeros(h * w, dtype=bool)
    for _, dy, dx in offsets:
        free = np.nonzero(match < 0)[0]
        if free.size == 0:
            break
        cand = gid[pp[free, 0] + r + dy, pp[free, 1] + r + dx]
        ok = cand >= 0
        ok[ok] = ~taken[cand[ok]]
        if not ok.any():
            continue
        who, g = free[ok], cand[ok]
        g, first = np.unique(g, return_index=True)  # one predicted pixel per GT pixel
        match[who[first]] = g
        taken[g] = True
    return match


def _bsds_match(pred: np.ndarray, gt: np.ndarray, max_dist: float) -> tuple[np.ndarray, int]:
    """The BSDS500 benchmark's own correspondence (its min-cost assignment with outlier
    costs, ``correspondPixels``), as the registry package ``pyedgeeval`` compiles it;
    ``max_dist`` in pixels here, as a fraction of the diagonal there."""
    try:
        from pyEdgeEval._lib import correspond_pixels
    except ImportError:
        raise RuntimeError("matching 'bsds' needs the pyedgeeval package (pip install '.[bench]')") from None
    h, w = pred.shape
    m1, m2, _, _ = correspond_pixels(pred.astype(np.float64), np.asarray(gt, np.float64), max_dist / np.hypot(h, w))
    return m1 > 0, int((m2 > 0).sum())


def match_count(pred: np.ndarray, gt: np.ndarray, max_dist: float, method: str = "greedy") -> tuple[np.ndarray, int]:
    """One-to-one matching of boundary pixels within ``max_dist``.

    ``method="maximum"``: maximum bipartite matching (most pairs); ``"greedy"``: pairs
    taken in order of distance, which, like the BSDS code's min-cost assignment,
    prefers near pairs, and runs in milliseconds; ``"bsds"``: the BSDS code itself
    (through pyedgeeval; about 30 times slower than greedy). Returns (boolean map of matched
    predicted pixels, number of matched GT pixels)."""
    pp = np.argwhere(pred)
    matched = np.zeros(pred.shape, dtype=bool)
    if len(pp) == 0 or not gt.any():
        return matched, 0
    if method == "bsds":
        return _bsds_match(pred, gt, max_dist)
    if method == "maximum":
        m = _maximum_match(pp, np.argwhere(gt), max_dist)
    elif method == "greedy":
        m = _greedy_match(pred, np.asarray(gt, bool), pp, max_dist)
    else:
        raise ValueError(f"unknown matching {method!r}")
    hit = m >= 0
    matched[pp[hit, 0], pp[hit, 1]] = True
    return matched, int(hit.sum())


class BoundaryODS:
    TOTALS = ("cnt",)

    def __init__(self, thresholds: int = 99, tolerance: float = 0.0075, matching: str = "greedy"):
        self.t = np.linspace(1.0 / (thresholds + 1), 1 - 1.0 / (thresholds + 1), thresholds)
        self.tol = tolerance
        self.matching = matching
        self.cnt = np.zeros((thresholds, 4), dtype=np.int64)  # cntR, sumR, cntP, sumP

    def update(self, prob: np.ndarray, gts: list[np.ndarray]) -> None:
        """``prob``: H x W edge probability in [0, 1]; ``gts``: annotators' 0/1 maps."""
        h, w = prob.shape
        max_dist = self.tol * np.hypot(h, w)
        gts = [np.asarray(g) > 0 for g in gts]
        sum_r = sum(int(g.sum()) for g in gts)
        for i, t in enumerate(self.t):
            pred = thin(prob >= t)
            any_match = np.zeros_like(pred)
            cnt_r = 0
            for g in gts:
                m, c = match_count(pred, g, max_dist, self.matching)
                any_match |= m
                cnt_r += c
            self.cnt[i] += (cnt_r, sum_r, int(any_match.sum()), int(pred.sum()))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cnt_r, sum_r, cnt_p, sum_p = self.cnt.T.astype(np.float64)
        r = np.divide(cnt_r, sum_r, out=np.zeros_like(cnt_r), where=sum_r > 0)
        p = np.divide(cnt_p, sum_p, out=np.ones_like(cnt_p), where=sum_p > 0)
        f = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        return p, r, f

    def value(self) -> float:
        return float(self.curve()[2].max())

    def best_threshold(self) -> float:
        return float(self.t[int(np.argmax(self.curve()[2]))])


def top1(pred_labels, true_labels) -> float:
    pred, true = np.asarray(pred_labels), np.asarray(true_labels)
    return float((pred == true).mean()) if true.size else 0.0


def depth_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """RMSE and AbsRel over pixels with ``gt > 0`` (and ``valid`` if given)."""
    m = gt > 0 if valid is None else (gt > 0) & valid
    d, g = pred[m].astype(np.float64), gt[m].astype(np.float64)
    if d.size == 0:
        return {"rmse": float("nan"), "absrel": float("nan")}
    return {"rmse": float(np.sqrt(np.mean((d - g) ** 2))), "absrel": float(np.mean(np.abs(d - g) / g))}


def mean_angular_error(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean angle in degrees between H x W x 3 normal fields (normalised here)."""
    p = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
    g = gt / np.maximum(np.linalg.norm(gt, axis=-1, keepdims=True), 1e-12)
    m = np.linalg.norm(gt, axis=-1) > 0 if valid is None else valid
    cos = np.clip((p * g).sum(-1)[m], -1, 1)
    return float(np.degrees(np.arccos(cos)).mean()) if cos.size else float("nan")


class SaliencyMaxF:
    """Max F-beta (beta^2 = 0.3) and MAE of saliency maps, computed as the saliency
    literature's evaluation code does (Achanta et al. 2009's F-measure as in the MATLAB
    toolboxes and ``py_sod_metrics``' ``Fmeasure`` and ``MAE``):

    * each prediction is the 8-bit map ``icm`` writes (``round(255 p)``), read back as
      ``im2double`` + ``mapminmax`` (divided by 255, then stretched to [0, 1] unless
      constant) and cut to 8 bits again; the ground truth is ``> 0.5`` (``> 128`` of 255);
    * per picture, precision and recall of ``pred >= t`` for the 256 thresholds t = 0..255
      (an empty prediction counts precision 0), and F = (1 + b) P R / (b P + R);
    * the dataset-level curve is the mean of the pictures' F curves; max-F is its maximum;
    * MAE is the mean over pictures of the mean |pred - gt| (pred after ``mapminmax``).
    """

    TOTALS = ("f_sum", "mae_sum", "n")

    def __init__(self, beta2: float = 0.3):
        self.beta2 = beta2
        self.f_sum = np.zeros(256)
        self.mae_sum = 0.0
        self.n = 0

    def update(self, sal: np.ndarray, gt: np.ndarray) -> None:
        g = np.asarray(gt)
        g = g if g.dtype == bool else g > 0.5
        p8 = np.round(np.clip(np.asarray(sal, dtype=np.float64), 0, 1) * 255)  # the written PNG
        p = p8 / 255
        if p.max() != p.min():
            p = (p - p.min()) / (p.max() - p.min())
        q = (p * 255).astype(np.uint8)
        bins = np.arange(257)
        fg = np.cumsum(np.histogram(q[g], bins=bins)[0][::-1])  # pixels >= 255, >= 254, ...
        bg = np.cumsum(np.histogram(q[~g], bins=bins)[0][::-1])
        tp, pp = fg.astype(np.float64), np.maximum(fg + bg, 1).astype(np.float64)
        prec, rec = tp / pp, tp / max(int(g.sum()), 1)
        num = (1 + self.beta2) * prec * rec
        self.f_sum += num / np.where(num == 0, 1, self.beta2 * prec + rec)
        self.mae_sum += float(np.abs(p - g).mean())
        self.n += 1

    def curve(self) -> np.ndarray:
        """The dataset-level F curve, thresholds 255 down to 0."""
        return self.f_sum / max(self.n, 1)

    def value(self) -> float:
        return float(self.curve().max()) if self.n else float("nan")

    def mae(self) -> float:
        return self.mae_sum / self.n if self.n else float("nan")
