"""Data audit: exact and near-duplicate images within and across splits (train/test leakage), class counts.

Exact duplicates are found by hashing every image's bytes (blake2b, then a byte comparison within each
hash group), so they cost one read of the data. Near duplicates are found among the remaining distinct
images with the exact integer kNN kernels (`kernels.distances.kneighbors`, L2 or L1 on uint8 rows): the
few nearest images of every image, kept when their per-pixel distance is at most `near`. Each pair of
splits (train with itself, test with train, test with itself, ...) is one kNN pass, so the audit costs
what kNN on the same rows costs; `cross_only=True` keeps only the leakage passes (val/test against the
splits before them), which for train + test is exactly one kNN pass of test against train.

Per-pixel distance: the root-mean-square pixel difference for L2 (sqrt(squared L2 / D)), the mean
absolute pixel difference for L1 (L1 / D), both on the 0..255 scale, so a threshold means the same for
any image size. Findings are data, not errors: nothing here raises because duplicates exist.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from .config import DEFAULT_MEMORY_MB
from .errors import UsageError

METRICS = ("l2", "l1")
# Per-pixel distance on 0..255. A JPEG (quality 75) copy of a 32x32 CIFAR image is RMS 7.9 from the
# original on average, 11.5 at the 95th percentile (larger images lose less per pixel); on CIFAR-10 no
# test image is within RMS 12.88 of a training image, so 12 flags re-encoded copies, not look-alikes.
DEFAULT_NEAR = 12.0
DEFAULT_NEIGHBORS = 3  # nearest images examined per image and split pair


@dataclass
class _Part:
    name: str
    X: np.ndarray  # (n, D) uint8
    y: np.ndarray
    names: list[str] | None

    def describe(self, i: int) -> dict:
        out = {"split": self.name, "index": int(i), "label": int(self.y[i])}
        if self.names is not None:
            out["file"] = self.names[i]
        return out


def _parts(splits: dict, names: dict | None) -> list[_Part]:
    parts = []
    for key, (X, y) in splits.items():
        X, y = np.asarray(X), np.asarray(y)
        if X.dtype != np.uint8 or X.ndim < 2:
            raise UsageError(f"the audit compares raw 8-bit images; the {key} split holds {X.dtype} data of shape "
                             f"{X.shape} (audit the data before preprocessing)")
        if y.shape != (len(X),):
            raise UsageError(f"the {key} split has {len(X)} images but labels of shape {y.shape}")
        rows = np.ascontiguousarray(X.reshape(len(X), -1))
        part_names = None if names is None else list(names.get(key) or []) or None
        if part_names is not None and len(part_names) != len(X):
            raise UsageError(f"{len(part_names)} file names for the {len(X)} images of the {key} split")
        parts.append(_Part(key, rows, y.astype(np.int64), part_names))
    dims = {p.X.shape[1] for p in parts}
    if len(dims) > 1:
        raise UsageError(f"the splits' images differ in size ({sorted(dims)} values per image)")
    return parts


# --------------------------------------------------------------------------------------------------
# exact duplicates: hashing


def exact_groups(parts: list[_Part]) -> list[list[tuple[int, int]]]:
    """Groups of byte-identical images as [(part, row), ...] (2 or more each), in order of first appearance."""
    buckets: dict[bytes, list[list[tuple[int, int]]]] = {}
    for p, part in enumerate(parts):
        for i, row in enumerate(part.X):
            digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            groups = buckets.setdefault(digest, [])
            # a hash collision would put different images in one bucket: compare the bytes to be exact
            for group in groups:
                q, j = group[0]
                if np.array_equal(parts[q].X[j], row):
                    group.append((p, i))
                    break
            else:
                groups.append([(p, i)])
    return [g for groups in buckets.values() for g in groups if len(g) > 1]


# --------------------------------------------------------------------------------------------------
# near duplicates: the kNN kernels with a threshold


def _near_pairs(parts, distinct, metric, near, k, memory_mb, cross_only, progress):
    """[(part a, row a, part b, row b, per-pixel distance)] with 0 < distance <= near, a pair once."""
    from .kernels.distances import kneighbors, sqnorms

    dim = parts[0].X.shape[1]
    limit = near * near * dim if metric == "l2" else near * dim
    found = {}
    for b, qb in enumerate(parts):
        for a in range(b + 1):
            if cross_only and a == b:
                continue
            rows_a, rows_b = distinct[a], distinct[b]
            if len(rows_a) == 0 or len(rows_b) == 0:
                continue
            kk = min(k + (a == b), len(rows_a))  # within a split an image is its own nearest
            Xa, Xb = parts[a].X[rows_a], qb.X[rows_b]
            norms = sqnorms(Xa) if metric == "l2" else None
            dist, idx = kneighbors(Xb, Xa, kk, metric, memory_mb=memory_mb, y_sqnorms=norms, progress=progress)
            qi, col = np.nonzero((dist <= limit) & (dist > 0))
            for i, c in zip(qi.tolist(), col.tolist()):
                key = (b, int(rows_b[i]), a, int(rows_a[idx[i, c]]))
                if a == b:
                    key = min(key, (a, key[3], b, key[1]))
                value = float(dist[i, c])
                found[key] = np.sqrt(value / dim) if metric == "l2" else value / dim
    return sorted((key + (d,) for key, d in found.items()), key=lambda t: (t[4], t[:4]))


# --------------------------------------------------------------------------------------------------
# the audit


def _pair_name(parts, a: int, b: int) -> str:
    return parts[a].name if a == b else f"{parts[b].name}/{parts[a].name}"


def audit(splits: dict, classes: list[str], *, names: dict | None = None, metric: str = "l2",
          near: float = DEFAULT_NEAR, neighbors: int = DEFAULT_NEIGHBORS, cross_only: bool = False,
          memory_mb: int = DEFAULT_MEMORY_MB, report=None, progress=None) -> dict:
    """Audit splits {name: (X uint8 (N, ...), y)} in split order (train first): a dict ready for JSON.

    `names` optionally gives each row's file name per split; `report` (datasets.folder.FolderReport)
    the sizes, modes and skipped files of an image folder, else sizes and modes come from the arrays.
    `near` is the per-pixel distance up to which two distinct images count as near duplicates (0 turns
    the near search off); `neighbors` how many nearest images are examined per image.
    `progress(n_rows)` is called as the kNN passes go.

    Every exact group and near pair is listed (`exact.list`, `near_duplicates.list`, nearest first), so
    a caller can act on each; the counts per split pair ("test/train" = test images with a copy in
    train; "train" = train images that copy an earlier train image):
      exact.by_pair, near_duplicates.by_pair: images with an exact / near (but not exact) duplicate;
      leakage[split]: images of a later split with an exact or near duplicate in an earlier one.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if isinstance(near, bool) or not isinstance(near, (int, float, np.integer, np.floating)) or not near >= 0:
        raise UsageError(f"near must be a per-pixel distance >= 0, got {near!r}")
    if isinstance(neighbors, bool) or not isinstance(neighbors, (int, np.integer)) or neighbors < 1:
        raise UsageError(f"neighbors must be an integer >= 1, got {neighbors!r}")
    parts = _parts(splits, names)
    if not parts:
        raise UsageError("nothing to audit: no splits")
    t0 = time.perf_counter()
    groups = exact_groups(parts)
    t_hash = time.perf_counter() - t0

    # One representative per exact group and split: the near search looks at distinct images only.
    dropped = [np.zeros(len(p.X), dtype=bool) for p in parts]
    exact_by_pair: dict[str, int] = {}
    leaked = {p.name: {"exact": set(), "near": set()} for p in parts}
    conflicting = []
    for group in groups:
        first_in = {}
        for p, i in group:
            if p in first_in:
                dropped[p][i] = True
                key = _pair_name(parts, p, p)
            else:
                first_in[p] = i
                earlier = min(first_in)
                if earlier == p:
                    continue
                key = _pair_name(parts, earlier, p)
                leaked[parts[p].name]["exact"].add(i)
            exact_by_pair[key] = exact_by_pair.get(key, 0) + 1
        if len({int(parts[p].y[i]) for p, i in group}) > 1:
            conflicting.append(group)
    distinct = [np.flatnonzero(~d) for d in dropped]

    t1 = time.perf_counter()
    pairs = _near_pairs(parts, distinct, metric, float(near), int(neighbors), memory_mb, cross_only, progress) \
        if near > 0 else []
    t_near = time.perf_counter() - t1
    near_by_pair: dict[str, set] = {}
    for b, i, a, j, _ in pairs:
        # "test/train": the test image has a near copy in train; within a split, count the later image
        key = _pair_name(parts, a, b)
        later = (b, i) if (b, i) > (a, j) else (a, j)
        near_by_pair.setdefault(key, set()).add(later)
        if a != b:  # b is the later split: its image i leaked
            leaked[parts[b].name]["near"].add(i)

    def group_info(group):
        return [parts[p].describe(i) for p, i in group]

    return {
        "splits": {p.name: len(p.X) for p in parts},
        **_source(splits, report),
        "classes": list(classes),
        "class_counts": {p.name: np.bincount(p.y, minlength=len(classes)).tolist() for p in parts},
        "metric": metric,
        "near": float(near),
        "neighbors": int(neighbors),
        "cross_only": bool(cross_only),
        "exact": {
            "groups": len(groups),
            "images": sum(len(g) for g in groups),
            "by_pair": exact_by_pair,
            "conflicting_labels": len(conflicting),
            "list": [group_info(g) for g in groups],
            "conflicting": [group_info(g) for g in conflicting],
        },
        "near_duplicates": {
            "pairs": len(pairs),
            "by_pair": {k: len(v) for k, v in near_by_pair.items()},
            "list": [{"a": parts[b].describe(i), "b": parts[a].describe(j), "distance": d}
                     for b, i, a, j, d in pairs],
        },
        "leakage": {p.name: {"exact": len(leaked[p.name]["exact"]), "near": len(leaked[p.name]["near"] -
                                                                          leaked[p.name]["exact"])}
                    for p in parts[1:]},
        "seconds": {"exact": t_hash, "near": t_near},
    }


def _source(splits: dict, report) -> dict:
    """Image sizes and modes as stored, and the files that could not be used."""
    if report is not None:
        skipped = [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in report.skipped
                   if s.reason in ("unreadable", "not an image")]
        return {"sizes": dict(report.sizes), "modes": dict(report.modes), "unreadable": skipped,
                "skipped_counts": report.skipped_counts()}
    shapes: dict[str, int] = {}
    modes: dict[str, int] = {}
    for X, _ in splits.values():
        X = np.asarray(X)
        if X.ndim == 4:
            key = f"{X.shape[1]}x{X.shape[2]}"
            mode = {1: "L", 3: "RGB"}.get(X.shape[3], f"{X.shape[3]} channels")
        else:
            key, mode = f"{X.shape[1]} values", "features"
        shapes[key] = shapes.get(key, 0) + len(X)
        modes[mode] = modes.get(mode, 0) + len(X)
    return {"sizes": shapes, "modes": modes, "unreadable": [], "skipped_counts": {}}
