"""Point-wise nuScenes-lidarseg evaluation in the devkit's own results format and metric.

Results format (nuscenes-devkit ``nuscenes/eval/lidarseg/README.md``, checked by its
``validate_submission.py``, read by its ``evaluate.py``)::

    <out_dir>/lidarseg/<eval_set>/<lidar_sd_token>_lidarseg.bin   uint8 (N,), classes 1..16, file point order
    <out_dir>/<eval_set>/submission.json                           {"meta": {"use_camera": bool, "use_lidar": bool,
                                                                    "use_radar": bool, "use_map": bool,
                                                                    "use_external": bool}}

Metric: the devkit's ``LidarSegEval`` (``nuscenes/eval/lidarseg/evaluate.py``): one global
``ConfusionMatrix(17, ignore_idx=0)`` over every keyframe LIDAR_TOP sweep of the split, ground
truth mapped to the 16 classes by ``LidarsegClassMapper``; IoU per class, mIoU = nanmean over the
classes (``ignore`` is NaN, classes absent from truth and prediction are NaN and skipped).

What ``LidarSegEval`` needs, and why it cannot always run: ``eval_set`` must be a key of
``nuscenes.utils.splits.create_splits_scenes()`` (train, val, test, mini_train, mini_val, ...) and
*every* scene of that split must be in the database (``get_samples_in_eval_set`` looks each name up
and raises KeyError otherwise), with a lidarseg table and a prediction file for every keyframe.
The embedded world's scenes (``scene-0001``...) belong to no official split (its split is
``bevlib_split.json``), and a partial download misses most of an official split's scenes. There
:func:`evaluate_lidarseg` computes the same numbers with the same devkit ``ConfusionMatrix`` over
the same exported files, the ground truth read by :func:`bevlib.data.lidar.load_lidar_sweep` and
mapped by :func:`bevlib.data.lidar.map_lidarseg` (equal to the devkit mapper's ``convert_label``).

Table layout: lukkassen2024 MultiViT Table 1 lists barrier, bicycle, bus, car, construction,
motorcycle, pedestrian, traffic cone, trailer, truck, driveable, other flat, sidewalk, terrain,
manmade, vegetation, mIoU (%) -- the devkit's class index order 1..16, then the mean.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .classes import NUSCENES_LIDARSEG_16
from .io import atomic_write, atomic_write_text

#: The ``meta`` keys ``validate_submission`` requires (exactly these, each a bool).
SUBMISSION_META_KEYS = ("use_camera", "use_lidar", "use_radar", "use_map", "use_external")
#: Class indices of the evaluation space; 0 (ignore) is not a valid prediction for the devkit.
NUM_EVAL_CLASSES = 16
#: lukkassen2024 Table 1 columns: (class name in :data:`NUSCENES_LIDARSEG_16`, paper header), then mIoU.
TABLE1_COLUMNS = tuple(zip(NUSCENES_LIDARSEG_16.names[1:], (
    "barrier", "bicycle", "bus", "car", "construction", "motorcycle", "pedestrian", "traffic cone",
    "trailer", "truck", "driveable", "other flat", "sidewalk", "terrain", "manmade", "vegetation"))) + (
    ("miou", "mIoU (%)"),)


def _pred_path(out_dir: Path, eval_set: str, sd_token: str) -> Path:
    return out_dir / "lidarseg" / eval_set / f"{sd_token}_lidarseg.bin"


def _check_meta(meta: Mapping) -> dict:
    if not isinstance(meta, Mapping) or set(meta) != set(SUBMISSION_META_KEYS):
        got = sorted(meta) if isinstance(meta, Mapping) else type(meta).__name__
        raise ValueError(f"meta must hold exactly {list(SUBMISSION_META_KEYS)}, got {got}")
    bad = [k for k in SUBMISSION_META_KEYS if type(meta[k]) is not bool]
    if bad:
        raise ValueError(f"meta values must be bool (the devkit checks type() == bool): {bad}")
    return {k: meta[k] for k in SUBMISSION_META_KEYS}


def _n_points(nusc, sd_token: str) -> int:
    """Points a prediction must have, decided as ``validate_submission`` does: the ground-truth
    label count where lidarseg exists, else the ``.pcd.bin`` row count."""
    from .data.lidar import point_count, lidarseg_path

    gt = lidarseg_path(nusc, sd_token)
    if gt is not None and gt.exists():
        return gt.stat().st_size    # one uint8 label per point
    return point_count(Path(nusc.get_sample_data_path(sd_token)))


def _check_prediction(sd_token: str, pred, n_points: int | None) -> np.ndarray:
    a = np.asarray(pred)
    if a.ndim != 1:
        raise ValueError(f"prediction for lidar sample_data {sd_token} must be 1-D (N,), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"prediction for lidar sample_data {sd_token} must hold integer class indices, got {a.dtype}")
    if n_points is not None and len(a) != n_points:
        raise ValueError(f"prediction for lidar sample_data {sd_token} has {len(a)} values but its sweep has "
                         f"{n_points} points (truncated or for another sweep)")
    if a.size and (a.min() < 1 or a.max() > NUM_EVAL_CLASSES):
        raise ValueError(f"prediction for lidar sample_data {sd_token} holds class {int(a.min() if a.min() < 1 else a.max())}"
                         f"; the devkit accepts 1..{NUM_EVAL_CLASSES} only (0 = ignore is no prediction)")
    return a.astype(np.uint8)


def export_lidarseg_predictions(predictions: Mapping[str, np.ndarray], out_dir: str | os.PathLike,
                                meta: Mapping[str, bool], eval_set: str = "val", nusc=None) -> Path:
    """Write predictions in the nuscenes-devkit lidarseg results format.

    Args:
        predictions: lidar ``sample_data`` token -> (N,) integer class indices in the 16-class
            evaluation space 1..16 (:data:`~bevlib.classes.NUSCENES_LIDARSEG_16`), one per point of
            that sweep's ``.pcd.bin`` in file order; stored as uint8.
        out_dir: results folder (created); files go to ``lidarseg/<eval_set>/<token>_lidarseg.bin``
            and ``<eval_set>/submission.json``.
        meta: exactly the bool fields ``use_camera, use_lidar, use_radar, use_map, use_external``.
        eval_set: split folder name (the devkit's ``eval_set``).
        nusc: optional NuScenes; when given every token must be a sample_data of it and every
            prediction's length must equal its point count (as ``validate_submission`` checks).
    Returns: ``out_dir`` as a Path.
    Raises: ValueError naming the token for a non-1-D, non-integer, wrong-length or out-of-range
        prediction, or for an unknown token (with ``nusc``); ValueError for a bad ``meta``.

    Every file is written atomically (:func:`bevlib.io.atomic_write`) and ``submission.json``
    last, so its presence means the prediction files are complete. All predictions are checked
    before anything is written.
    """
    out = Path(out_dir)
    meta = _check_meta(meta)
    checked = {}
    for tok, pred in predictions.items():
        n = None
        if nusc is not None:
            try:
                nusc.get("sample_data", tok)
            except KeyError:
                raise ValueError(f"prediction token {tok} is no sample_data of {nusc.version}") from None
            n = _n_points(nusc, tok)
        checked[tok] = _check_prediction(tok, pred, n)
    (out / "lidarseg" / eval_set).mkdir(parents=True, exist_ok=True)
    for tok, a in checked.items():
        atomic_write(_pred_path(out, eval_set, tok), lambda tmp, a=a: a.tofile(tmp))
    atomic_write_text(out / eval_set / "submission.json", json.dumps({"meta": meta}, indent=2))
    return out


def eval_scenes(nusc, eval_set: str) -> tuple[list[str], bool]:
    """Scene names of ``eval_set`` and whether the devkit's ``LidarSegEval`` can run on it.

    The embedded world (``bevlib_split.json`` in its dataroot) resolves ``train`` / ``val`` to its
    own split (never official: devkit False). Other names are devkit splits
    (``create_splits_scenes``): devkit True when every scene of the split is in ``nusc``,
    otherwise the scenes present (devkit False).
    Raises: ValueError for an unknown split name or a split with no scene in ``nusc``.
    """
    from nuscenes.utils.splits import create_splits_scenes

    from .data.nuscenes_data import split_scenes

    present = {s["name"] for s in nusc.scene}
    if (Path(nusc.dataroot) / "bevlib_split.json").exists() and eval_set in ("train", "val"):
        return split_scenes(nusc)[eval_set], False
    splits = create_splits_scenes(verbose=False)
    if eval_set not in splits:
        raise ValueError(f"unknown eval_set {eval_set!r}; devkit splits: {sorted(splits)}")
    scenes = [s for s in splits[eval_set] if s in present]
    if not scenes:
        raise ValueError(f"no scene of devkit split {eval_set!r} is in {nusc.version} at {nusc.dataroot}")
    return scenes, len(scenes) == len(splits[eval_set])


def evaluate_lidarseg(nusc, predictions: Mapping[str, np.ndarray], eval_set: str,
                      out_dir: str | os.PathLike | None = None, meta: Mapping[str, bool] | None = None) -> dict:
    """Score point-wise predictions with nuscenes-devkit's lidarseg evaluation.

    The predictions are exported (:func:`export_lidarseg_predictions`, to ``out_dir`` or a
    temporary folder) and the exported files are what is scored: by the devkit's ``LidarSegEval``
    where it can run (an official split, all of whose scenes are present), otherwise by the same
    devkit ``ConfusionMatrix(17, 0)`` over the keyframes of :func:`eval_scenes`, ground truth from
    :func:`~bevlib.data.lidar.load_lidar_sweep` (one sweep, every point) mapped by
    :func:`~bevlib.data.lidar.map_lidarseg` (see the module docstring).

    Args:
        predictions: LIDAR_TOP sample_data token -> (N,) integer classes 1..16, one per point;
            must cover every keyframe of the split (other tokens are exported but not scored).
        eval_set: a devkit split name, or ``train`` / ``val`` of the embedded world.
        meta: submission meta (default: LiDAR only, everything else False).
    Returns: dict with ``iou_per_class`` (class name -> IoU fraction, NaN for ``ignore`` and
        absent classes, devkit index order), ``miou`` and ``freq_weighted_iou`` (fractions, as the
        devkit's), ``confusion`` ((17, 17) int64, rows ground truth), ``backend``
        (``"LidarSegEval"`` or ``"ConfusionMatrix"``), ``eval_set``, ``scenes``, ``n_samples``,
        ``results_folder`` (None when it was temporary).
    Raises: ValueError naming the token of a missing, wrong-length or out-of-range prediction;
        ValueError for an unknown split; DataError (from :mod:`bevlib.data.lidar`) for missing
        ground truth.
    """
    scenes, devkit_ok = eval_scenes(nusc, eval_set)
    if not getattr(nusc, "lidarseg", None):
        raise ValueError(f"{nusc.version} at {nusc.dataroot} has no lidarseg ground truth")
    from .data.nuscenes_data import scene_sample_tokens

    samples = scene_sample_tokens(nusc, scenes)
    sd_tokens = {s: nusc.get("sample", s)["data"]["LIDAR_TOP"] for s in samples}
    missing = [t for t in sd_tokens.values() if t not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} keyframe sweeps of {eval_set!r} have no prediction, e.g. lidar "
                         f"sample_data {missing[0]}")
    meta = meta if meta is not None else dict(use_camera=False, use_lidar=True, use_radar=False,
                                              use_map=False, use_external=False)
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="lidarseg-results-") as tmp:
            res = _evaluate_exported(nusc, predictions, eval_set, Path(tmp), meta, devkit_ok, sd_tokens)
        res["results_folder"] = None
    else:
        res = _evaluate_exported(nusc, predictions, eval_set, Path(out_dir), meta, devkit_ok, sd_tokens)
        res["results_folder"] = str(out_dir)
    res.update(eval_set=eval_set, scenes=list(scenes), n_samples=len(samples))
    return res


def _evaluate_exported(nusc, predictions, eval_set, out: Path, meta, devkit_ok: bool, sd_tokens: dict) -> dict:
    from nuscenes.eval.lidarseg.utils import ConfusionMatrix as DevkitCM
    from nuscenes.utils.data_io import load_bin_file

    export_lidarseg_predictions(predictions, out, meta, eval_set=eval_set, nusc=nusc)
    names = NUSCENES_LIDARSEG_16.names
    if devkit_ok:
        from nuscenes.eval.lidarseg.evaluate import LidarSegEval

        ev = LidarSegEval(nusc, str(out), eval_set=eval_set, verbose=False)
        res = ev.evaluate()
        cm = ev.global_cm
        backend = "LidarSegEval"
    else:
        from .data.lidar import load_lidar_sweep, map_lidarseg

        cm = DevkitCM(len(names), NUSCENES_LIDARSEG_16.ignore_index)
        for sample_tok, sd_tok in sd_tokens.items():
            sweep = load_lidar_sweep(nusc, sample_tok)
            if sweep is None or sweep.lidarseg is None:
                raise ValueError(f"keyframe {sample_tok} has no LIDAR_TOP lidarseg ground truth")
            gt = map_lidarseg(nusc, sweep.lidarseg)
            pred = load_bin_file(str(_pred_path(out, eval_set, sd_tok)), type="lidarseg")
            cm.update(gt, pred)
        iou = cm.get_per_class_iou()
        res = {"iou_per_class": {names[i]: v for i, v in enumerate(iou)}, "miou": cm.get_mean_iou(),
               "freq_weighted_iou": cm.get_freqweighted_iou()}
        backend = "ConfusionMatrix"
    res["iou_per_class"] = {k: float(v) for k, v in res["iou_per_class"].items()}
    res["confusion"] = np.asarray(cm.global_cm, dtype=np.int64).copy()
    res["backend"] = backend
    return res


def lidarseg_table_rows(results: Mapping[str, Mapping] | Mapping, percent: bool = True,
                        headers: str = "names", digits: int | None = 1) -> list[dict]:
    """Rows of per-class IoU and mIoU in lukkassen2024 MultiViT Table 1's column order.

    Args:
        results: one :func:`evaluate_lidarseg` result, or method name -> result (one row each,
            in the mapping's order).
        percent: IoU in percent (the paper's unit) instead of fractions.
        headers: ``"names"`` keys the 16 classes by :data:`~bevlib.classes.NUSCENES_LIDARSEG_16`
            names and the mean by ``"miou"``; ``"paper"`` by the paper's headers
            (``"construction"``, ``"traffic cone"``, ..., ``"mIoU (%)"``).
        digits: rounding (None keeps full precision).
    Returns: list of dicts: ``"method"`` (None for a single result) then the 16 classes in
        barrier..vegetation order then the mean; absent classes are NaN.
    Raises: ValueError for another ``headers``.
    """
    if headers not in ("names", "paper"):
        raise ValueError(f"headers must be 'names' or 'paper', got {headers!r}")
    runs = {None: results} if "iou_per_class" in results else dict(results)
    s = 100.0 if percent else 1.0
    rows = []
    for method, r in runs.items():
        row = {"method": method}
        for name, paper in TABLE1_COLUMNS:
            v = float(r["miou"] if name == "miou" else r["iou_per_class"].get(name, float("nan"))) * s
            row[paper if headers == "paper" else name] = round(v, digits) if digits is not None and v == v else v
        rows.append(row)
    return rows
