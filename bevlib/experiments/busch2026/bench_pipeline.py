"""``python -m bevlib.bench pipeline``: does busch2026 Table I's input pipeline keep up with its
training step (issue 15, item 3)?

Setting: the Table I data layer (``KeyframeStore`` + ``KeyframeDataset`` with the previous keyframe, as
:func:`bevlib.experiments.busch2026.runs.prepare` configures it) and task (``runs.make_task``) on the
embedded world of the ``Table1Params`` defaults and on the real keyframe in ``../shared`` (cameras only:
no map expansion, so ``bev_gt`` is all IGNORE and uncached; no pseudo-labels), at the embedded-default
and the paper sizes (``params/table1/paper.yaml``: 512 x 288, 400 x 200 BEV, batch 6). Result rows (kind):

* ``field``: ms per keyframe of each field of ``load_keyframe`` alone, field cache cold and warm;
* ``preload``: ``KeyframeStore.preload`` (what ``prepare`` does for small worlds), cold and warm;
* ``data``: keyframes/s of the DataLoader as the trainer builds it (``trainer._loader``), no model,
  0 / 1 / 2 workers, from the preloaded store ("memory") or read per item ("disk cold" / "disk warm");
* ``step``: forward + backward + clipping + AdamW on a pre-collated batch, per mode; steps/s;
* ``loop``: the trainer's loop with the supervised step (the fastest: the largest waiting share), time
  in ``next(loader)`` over the whole step, beside the share predicted from the ``data`` and ``step``
  rates alone, which ignores that workers and the step's threads share the cores.

"Cold" is a scratch ``BEVLIB_CACHE`` with an empty ``fields/`` whose other entries (worlds,
pseudo-labels, native kernels) link to the real cache, so nothing is regenerated; the OS page cache is
not dropped. Timings are medians over ``steps`` batches after a first one reported apart (it holds the
workers' start-up). The paper-size step (batch 1 on 2 CPU cores: ~26 s and ~10 GiB) runs only with ``paper``.
Target (reported): <= 10 % of a step waiting for data at the embedded-default size, with
``TrainConfig``'s default ``num_workers`` and the store ``prepare`` builds.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ...bench_common import _median_ms, bench_result, environment, torch_timing

TARGET_WAIT_SHARE = 0.10
WORKERS = (0, 1, 2)
MODES = (("supervised", False), ("pretrain", False), ("pretrain", True))
#: Keys of params/table1/paper.yaml that set sizes; real data, labeller and weights stay embedded/synthetic/random.
PAPER_SIZE_KEYS = ("image_wh", "bev_hw", "query_hw", "bev_style", "backbone", "embed_dim", "num_layers",
                   "num_heads", "ffn_dim", "batch_size", "lr", "backbone_lr_mult")
#: --quick: the smoke preset's sizes on a tiny world (tests' TINY: 2 scenes x 3 keyframes, 320 x 180).
QUICK = dict(image_wh=(128, 72), bev_hw=(60, 30), query_hw=(20, 10), embed_dim=16, num_layers=1, ffn_dim=32)
QUICK_WORLD = dict(seed=0, n_scenes=2, keyframes_per_scene=3, image_wh=(320, 180), val_scenes=1,
                   ground_resolution=0.1, lidar_azimuth_steps=540)


class _ScratchCache:
    """A ``BEVLIB_CACHE`` for the field caches only: ``fields/`` is ours (cleared = cold), every other
    entry links to the real cache. Sets the variable now (forked workers inherit it); :meth:`close`
    restores it and deletes the folder (links are unlinked, never followed)."""

    def __init__(self):
        from ...paths import cache_dir
        base = cache_dir()
        self.root = Path(tempfile.mkdtemp(prefix="bevlib-pipeline-cache-"))
        for e in (base.iterdir() if base.is_dir() else ()):
            if e.name != "fields":
                (self.root / e.name).symlink_to(e.resolve())
        self._old = os.environ.get("BEVLIB_CACHE")
        os.environ["BEVLIB_CACHE"] = str(self.root)

    def clear(self) -> None:
        shutil.rmtree(self.root / "fields", ignore_errors=True)

    def close(self) -> None:
        if self._old is None:
            os.environ.pop("BEVLIB_CACHE", None)
        else:
            os.environ["BEVLIB_CACHE"] = self._old
        shutil.rmtree(self.root, ignore_errors=True)


def _params(quick: bool, dataroot, paper: bool):
    """Table1Params of a size: the defaults (or QUICK), or the paper preset's sizes on the same data."""
    import yaml

    from .params import Table1Params
    from ...paths import project_root

    v = dict(QUICK) if quick else {}
    if paper:
        preset = yaml.safe_load((project_root() / "params" / "table1" / "paper.yaml").read_text())
        v.update({k: preset[k] for k in PAPER_SIZE_KEYS if k in preset})
    return Table1Params(**v, dataroot=dataroot, progress=False)


def _open(which: str, p):
    """(nusc, keyframe tokens the loaders draw from, labeller name or None, keyframes in the dataset,
    fields loaded). Embedded: the train split, its pseudo-labels generated first (``prepare``'s
    offline stage). Real: its one keyframe (a loader repeats it)."""
    from ...data.nuscenes_data import open_nuscenes

    if which == "real keyframe":
        from ...data.source import real_keyframe_root
        nusc = open_nuscenes(real_keyframe_root(), "v1.0-mini")
        return (nusc, [s["token"] for s in nusc.sample], None, len(nusc.sample),
                "cameras (6 x 1600x900 JPEG); bev_gt absent (no map expansion): IGNORE, uncached; no pseudo-labels")
    from ...data.pseudo import cache_pseudo_labels
    from ...data.source import open_split
    from .runs import _camera_tokens, make_labeler

    _, _, nusc, train, val = open_split(p, "the pipeline bench", progress=False)
    lab = make_labeler(p)
    cache_pseudo_labels(nusc, lab, [sd for t in train for sd in _camera_tokens(nusc, t)], progress=False)
    return nusc, train, lab.name, len(train) + len(val), "cameras, bev_gt (cached field), pseudo (cached PNGs)"


def _kcfg(p, labeler, fields=None):
    """The KeyframeConfig ``runs.prepare`` builds for ``p`` (``fields`` narrows it)."""
    from ...data.fields import BUSCH2026_FIELDS, KeyframeConfig
    from ...data.nuscenes_data import BEVTargetConfig
    return KeyframeConfig(image_wh=p.image_wh, grid=p.grid, labeler=labeler, fields=fields or BUSCH2026_FIELDS,
                          target=BEVTargetConfig(line_width_m=p.line_width_m, style=p.bev_style))


def _task(p, nusc, store, tokens, labeler, mode="supervised", temporal=False):
    from .runs import Experiment, make_task
    return make_task(Experiment(p, nusc, store, list(tokens), list(tokens), [], labeler or ""), tokens,
                     mode=mode, temporal=temporal)


def _batches(n_tokens: int, batch: int, n: int, seed: int = 0) -> list:
    """``n`` full index lists drawn as the trainer draws an epoch (:func:`epoch_batches`), epochs chained."""
    from ...train.trainer import epoch_batches
    out, epoch = [], 1
    while len(out) < n:
        full = [b for b in epoch_batches(n_tokens, batch, seed, epoch) if len(b) == batch]
        if not full:  # fewer keyframes than a batch: repeat them
            full = [[i % n_tokens for i in range(batch)]]
        out += full
        epoch += 1
    return out[:n]


def _loader(task, ds, lists, workers: int):
    from ...train import TrainConfig
    from ...train.trainer import _loader as trainer_loader
    # the trainer's own constructor: same wrapper (_SeededItems), collate, pin_memory rule
    return trainer_loader(task, ds, lists, TrainConfig(batch_size=len(lists[0]), num_workers=workers),
                          torch.device("cpu"), 0, 1)


def _step(task, model, opt, batch) -> float:
    """One optimiser step as :func:`bevlib.train.train` takes it (no scheduler, spike guard, checkpoints)."""
    opt.zero_grad(set_to_none=True)
    terms = task.loss(model, batch)
    loss = sum(terms.values())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)  # TrainConfig.grad_clip
    opt.step()
    return float(loss.item())


def _model(task, p):
    from .runs import _train_cfg
    from ...train.optim import build_optimizer
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    return model, build_optimizer(task.param_groups(model), _train_cfg(p, 0))


def _step_rates(task, model, opt, batch, steps: int, warmup: int) -> dict:
    times = []
    for _ in range(warmup + steps):
        t = time.perf_counter()
        loss = _step(task, model, opt, batch)
        times.append(time.perf_counter() - t)
    med = statistics.median(times[warmup:])
    return {"first_ms": round(1e3 * times[0], 1), "step_ms": _median_ms(times[warmup:]),
            "steps_per_s": round(1 / med, 3), "keyframes_per_s": round(len(batch["index"]) / med, 2),
            "loss_finite": math.isfinite(loss)}


def _run(task, ds, lists, workers: int, model=None, opt=None) -> dict:
    """Iterate the trainer's loader over ``lists``: with ``model``, the trainer's loop (``next(loader)``
    timed apart from the step), without, the loader alone. The first batch / step (worker start-up) apart."""
    from ...train.trainer import to_device
    t0 = time.perf_counter()
    it = iter(_loader(task, ds, lists, workers))
    waits, totals, n = [], [], 0
    for _ in lists:
        t = time.perf_counter() if waits else t0
        batch = to_device(next(it), torch.device("cpu"))
        waits.append(time.perf_counter() - t)
        n += len(batch["index"])
        if model is not None:
            _step(task, model, opt, batch)
        totals.append(time.perf_counter() - t)
    del it  # shuts the workers down before the next measurement
    w, s = waits[1:] or waits, totals[1:] or totals
    out = {"asked": sum(map(len, lists)), "delivered": n}
    if model is None:
        return {**out, "first_batch_ms": round(1e3 * waits[0], 1), "batch_ms": _median_ms(w),
                "keyframes_per_s": round(len(lists[0]) / statistics.median(w), 2)}
    share = sum(w) / sum(s)
    # compute_ms shows what hiding the loading costs: on 2 cores a worker slows the step's threads
    return {**out, "steps": len(s), "first_step_ms": round(1e3 * totals[0], 1),
            "first_wait_ms": round(1e3 * waits[0], 1), "wait_ms": _median_ms(w),
            "compute_ms": _median_ms([b - a for a, b in zip(w, s)]), "step_ms": _median_ms(s),
            "steps_per_s": round(1 / statistics.median(s), 3), "wait_share": round(share, 4),
            "wait_share_median": round(statistics.median(a / b for a, b in zip(w, s)), 4),
            "meets_target": share <= TARGET_WAIT_SHARE}


def _field_rows(name, size, nusc, p, labeler, tokens, cache) -> list:
    """ms per keyframe of each Table I field alone, cold then warm (one process, no previous keyframe)."""
    from ...data.fields import load_keyframe
    rows = []
    for field in ("cameras", "bev_gt", "pseudo"):
        if field == "pseudo" and not labeler:
            continue
        cfg = _kcfg(p, labeler, (field,))
        cache.clear()
        for state in (("cold", "warm") if field == "bev_gt" else ("n/a",)):
            times = []
            for t in tokens:
                t0 = time.perf_counter()
                load_keyframe(nusc, t, cfg)
                times.append(time.perf_counter() - t0)
            rows.append({"kind": "field", "dataset": name, "size": size, "field": field, "cache": state,
                         "keyframes": len(tokens), "ms_per_keyframe": _median_ms(times)})
    return rows


def _measure(name, size, p, opened, cache, steps, workers, default_workers, paper_steps) -> list:
    """Every row of one (dataset, size): fields, preload, data layer; at the embedded-default size the
    model steps (embedded) and loops; at the paper size with ``paper_steps`` > 0 (embedded) its batch-1
    step and one loop (default workers, disk warm, as trainval is read)."""
    import dataclasses as dc

    from ...data.dataset import KeyframeStore

    nusc, tokens, labeler, _, _ = opened
    B, n_batches = p.batch_size, steps + 1
    lists = _batches(len(tokens), B, n_batches)
    if name == "real keyframe":  # one keyframe: every item is a fresh read of it
        tokens, lists = tokens * (B * n_batches), [list(range(i * B, (i + 1) * B)) for i in range(n_batches)]
    distinct = sorted({tokens[i] for b in lists for i in b})
    rows = _field_rows(name, size, nusc, p, labeler, distinct[:steps + 2], cache)
    cfg = _kcfg(p, labeler)
    cache.clear()
    for state in ("cold", "warm"):  # what runs.prepare does for small worlds
        store = KeyframeStore(nusc, cfg, in_memory=True)
        t0 = time.perf_counter()
        store.preload(distinct, progress=False)
        dt = time.perf_counter() - t0
        rows.append({"kind": "preload", "dataset": name, "size": size, "cache": state, "keyframes": len(store._items),
                     "seconds": round(dt, 3), "keyframes_per_s": round(len(store._items) / dt, 2)})
    # order matters: the cold runs fill the scratch cache the warm ones read
    stores = {"memory": store, "disk cold": KeyframeStore(nusc, cfg, in_memory=False),
              "disk warm": KeyframeStore(nusc, cfg, in_memory=False)}
    if name == "real keyframe":  # nothing of it is cached: cold and warm are one case
        stores = {"memory": store, "disk": stores["disk warm"]}
    default_size = size == "embedded-default"
    model = None
    if name == "embedded" and (default_size or paper_steps):
        pb = p if default_size else dc.replace(p, batch_size=1)  # batch 6 at the paper size does not fit 24 GiB
        for mode, temporal in (MODES if default_size else MODES[:1]):
            t = _task(pb, nusc, store, tokens, labeler, mode, temporal)
            ds = t.train_dataset()
            m, o = _model(t, pb)
            n, wu = (steps, 2) if default_size else (paper_steps, 1)
            rows.append({"kind": "step", "dataset": name, "size": size, "batch": pb.batch_size,
                         "mode": mode + (" + temporal" if temporal else ""),
                         **_step_rates(t, m, o, t.collate([ds[i] for i in lists[0][:pb.batch_size]]), n, wu)})
            if model is None:
                model, opt = m, o  # the supervised model runs the loops
            del m, o
    elif name == "embedded" and not default_size:
        rows.append({"kind": "step", "dataset": name, "size": size, "mode": "supervised", "batch": 1,
                     "step_ms": "not measured (--paper)"})
    elif default_size:  # the real keyframe: the same model and sizes, its own batches
        model, opt = _model(_task(p, nusc, store, tokens, labeler), p)
    for source, st in stores.items():
        task = _task(p, nusc, st, tokens, labeler)
        ds = task.train_dataset()
        for w in workers:
            if source == "disk cold":
                cache.clear()
            rows.append({"kind": "data", "dataset": name, "size": size, "source": source, "workers": w, "batch": B,
                         **_run(task, ds, lists, w)})
        if model is None:
            continue
        if default_size:
            loops, llists = workers, lists
        elif source == "disk warm":
            loops, llists = (default_workers,), _batches(len(tokens), 1, paper_steps + 1)
        else:
            continue
        for w in loops:
            if source == "disk cold":
                cache.clear()
            rows.append({"kind": "loop", "dataset": name, "size": size, "source": source, "workers": w,
                         "batch": len(llists[0]), **_run(task, ds, llists, w, model, opt),
                         "field_cache_files": sum(1 for _ in (cache.root / "fields").rglob("*.npz"))})
    return rows


def _predict(rows: list) -> None:
    """Each loop row's ``predicted_wait_share`` from the two rates measured apart: its data row's
    keyframes/s and the supervised step row of its size (the real keyframe runs the same model and shapes).
    Workers 0: load / (load + step); >= 1: max(0, load - step) / max(load, step) (no contention assumed)."""
    for r in rows:
        if r["kind"] != "loop":
            continue
        step = next((x["step_ms"] for x in rows if x["kind"] == "step" and x["size"] == r["size"]
                     and x["mode"] == "supervised" and not isinstance(x["step_ms"], str)), None)
        data = next(x for x in rows if x["kind"] == "data" and x["dataset"] == r["dataset"]
                    and x["size"] == r["size"] and x["source"] == r["source"] and x["workers"] == r["workers"])
        load = 1e3 * r["batch"] / data["keyframes_per_s"]
        if step is None:
            r["predicted_wait_share"] = None
        elif r["workers"] == 0:
            r["predicted_wait_share"] = round(load / (load + step), 4)
        else:
            r["predicted_wait_share"] = round(max(0.0, load - step) / max(load, step), 4)


def bench_pipeline(steps: int = 8, workers=WORKERS, threads: int = 2, quick: bool = False, paper: bool = False,
                   paper_steps: int = 2, dataroot: str | None = None, real: bool = True) -> dict:
    """Measure the Table I input pipeline against the training step (module doc).

    Args:
        steps: timed batches / steps per measurement after the first (median reported; >= 1).
        workers: DataLoader worker counts (TrainConfig's default, 0, is judged).
        threads: ``torch.set_num_threads`` of the training process (workers use 1 each, torch's rule).
        quick: the smoke sizes on a tiny world (tests); no paper-size rows.
        paper: also the paper-size step (batch 1, ``paper_steps`` timed after one) and its loop with
            default workers reading from disk (trainval is not preloaded). ~26 s and ~10 GiB per step on 2 CPU cores.
        dataroot: a nuScenes-layout folder instead of the embedded world (e.g. a test's tiny world).
        real: include the real keyframe when ``../shared/nuscenes-keyframe`` holds it.
    Returns: the JSON-ready result: ``config``, ``environment``, ``targets``, ``results`` (rows with
        ``kind`` field / preload / data / step / loop; times in ms, rates per second, shares in [0, 1]),
        ``summary`` (the judged loop row's ``wait_share`` and ``meets_target``, and every loop
        configuration meeting the target).
    Raises: ValueError for steps < 1, an empty or negative ``workers``, threads < 1; DataError /
        ParameterError from opening the data.
    """
    from ...data.source import real_keyframe_root
    from ...train import TrainConfig

    workers = tuple(int(w) for w in workers)
    if steps < 1 or not workers or min(workers) < 0 or threads < 1:
        raise ValueError(f"need steps >= 1, workers >= 0 (non-empty), threads >= 1; got {steps}, {workers}, {threads}")
    default_workers = TrainConfig().num_workers
    if quick and dataroot is None:
        from ...data.world import WorldConfig, ensure_world
        dataroot = str(ensure_world(cfg=WorldConfig(**QUICK_WORLD), progress=False))
    sizes = {"embedded-default": _params(quick, dataroot, False)}
    if not quick:
        sizes["paper"] = _params(False, dataroot, True)
    p0 = sizes["embedded-default"]
    datasets = ["embedded"] + (["real keyframe"] if real and (real_keyframe_root() / "v1.0-mini").is_dir() else [])
    rows, opened, world = [], {}, None
    with torch_timing(threads) as (load_start, reused):
        for name in datasets:
            opened[name] = _open(name, p0)  # before the scratch cache: world and labels go to the real cache
        if dataroot is None:
            wc = p0.world_config()
            world = {"hash": wc.hash(), **dataclasses.asdict(wc), "camera_timing": getattr(wc, "camera_timing", None)}
        try:  # loaded (or built) now, from the real cache: the scratch one is deleted afterwards
            from ...native import status as native_status
            native = native_status()
        except Exception as e:  # the kernels are optional; say why they are not there
            native = f"unknown: {type(e).__name__}: {e}"
        cache = _ScratchCache()
        # the real keyframe's absent map expansion is logged on every load: once is enough
        quiet = logging.getLogger("bevlib.data.nuscenes_data")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            for name in datasets:
                for size, p in sizes.items():
                    rows += _measure(name, size, p, opened[name], cache, steps, workers, default_workers,
                                     paper_steps if paper else 0)
        finally:
            quiet.setLevel(level)
            cache.close()
    _predict(rows)
    # runs.prepare's rule: worlds of <= 3000 keyframes are preloaded
    in_memory = p0.in_memory if p0.in_memory is not None else opened["embedded"][3] <= 3000
    as_built = "memory" if in_memory else "disk warm"
    judged = next((r for r in rows if r["kind"] == "loop" and r["dataset"] == "embedded"
                   and r["size"] == "embedded-default" and r["source"] == as_built
                   and r["workers"] == default_workers), None)
    return bench_result(
        "pipeline",
        config={"steps": steps, "workers": list(workers), "default_workers": default_workers, "threads": threads,
                "quick": quick, "paper": paper, "paper_steps": paper_steps if paper else None,
                "dataroot": dataroot or "embedded", "world": world, "as_built_source": as_built,
                "sizes": {k: {"image_wh": list(v.image_wh), "bev_hw": list(v.bev_hw), "query_hw": list(v.query_hw),
                              "backbone": v.backbone, "embed_dim": v.embed_dim, "num_layers": v.num_layers,
                              "batch_size": v.batch_size} for k, v in sizes.items()},
                "datasets": {k: {"keyframes_drawn_from": len(set(v[1])), "keyframes_in_dataset": v[3],
                                 "fields": v[4]} for k, v in opened.items()},
                "loop_mode": "supervised (the fastest step, so the largest waiting share)",
                "reuse_large_allocations": reused,
                "statistic": "medians over `steps` batches/steps after the first (reported apart); wait_share = "
                             "sum of next() time / sum of step time over those steps"},
        environment=environment(load_start, torch=torch.__version__, native_kernels=native),
        targets={"wait_share_max": TARGET_WAIT_SHARE, "judged": {"dataset": "embedded", "size": "embedded-default",
                                                                  "source": as_built, "workers": default_workers}},
        results=rows,
        summary={"wait_share": judged and judged["wait_share"], "meets_target": bool(judged and judged["meets_target"]),
                 "loops_meeting_target": [f"{r['dataset']}/{r['size']}/{r['source']}/{r['workers']}w" for r in rows
                                          if r["kind"] == "loop" and r["meets_target"]]})


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def format_pipeline_table(result: dict) -> str:
    """The pipeline benchmark as fixed-width text tables, one per section."""
    c, rows, load = result["config"], result["results"], result["environment"]["load_average_1min"]

    def section(title, kind, head, line):
        return ["", title, head] + [line(r) for r in rows if r["kind"] == kind]

    where = lambda r: f"{r['dataset']:>14} {r['size']:>16}"  # noqa: E731
    out = [f"pipeline benchmark: busch2026 Table I, {c['threads']} threads, medians of {c['steps']} after the first; "
           f"load average {load['start']} -> {load['end']}"]
    out += section("fields (one process, ms per keyframe)", "field",
                   f"{'dataset':>14} {'size':>16} {'field':>8} {'cache':>5} {'ms':>8}",
                   lambda r: f"{where(r)} {r['field']:>8} {r['cache']:>5} {r['ms_per_keyframe']:>8.2f}")
    out += section("preload (KeyframeStore.preload, keyframes incl. previous ones)", "preload",
                   f"{'dataset':>14} {'size':>16} {'cache':>5} {'kf':>4} {'s':>7} {'kf/s':>8}",
                   lambda r: f"{where(r)} {r['cache']:>5} {r['keyframes']:>4} {r['seconds']:>7.2f} "
                             f"{r['keyframes_per_s']:>8.1f}")
    out += section("data layer alone (DataLoader as the trainer builds it)", "data",
                   f"{'dataset':>14} {'size':>16} {'source':>10} {'wk':>2} {'B':>2} {'kf/s':>8} {'batch ms':>9} "
                   f"{'first ms':>9}",
                   lambda r: f"{where(r)} {r['source']:>10} {r['workers']:>2} {r['batch']:>2} "
                             f"{r['keyframes_per_s']:>8.1f} {r['batch_ms']:>9.1f} {r['first_batch_ms']:>9.1f}")
    out += section("model step (fwd + bwd + clip + AdamW, pre-collated batch)", "step",
                   f"{'size':>16} {'mode':>20} {'B':>2} {'step ms':>9} {'steps/s':>8} {'kf/s':>7} {'first ms':>9}",
                   lambda r: f"{r['size']:>16} {r['mode']:>20} {r['batch']:>2} " + (
                       r["step_ms"] if isinstance(r["step_ms"], str) else
                       f"{r['step_ms']:>9.1f} {r['steps_per_s']:>8.2f} {r['keyframes_per_s']:>7.1f} "
                       f"{r['first_ms']:>9.1f}"))
    out += section("training loop (supervised step; wait = time in next(loader))", "loop",
                   f"{'dataset':>14} {'size':>16} {'source':>10} {'wk':>2} {'wait ms':>8} {'compute':>8} "
                   f"{'step ms':>8} {'steps/s':>7} {'wait %':>7} {'pred %':>7} {'1st step/wait ms':>17}",
                   lambda r: f"{where(r)} {r['source']:>10} {r['workers']:>2} {r['wait_ms']:>8.1f} "
                             f"{r['compute_ms']:>8.1f} {r['step_ms']:>8.1f} {r['steps_per_s']:>7.2f} "
                             f"{_pct(r['wait_share']):>7} {_pct(r['predicted_wait_share']):>7} "
                             f"{r['first_step_ms']:>8.0f}/{r['first_wait_ms']:<8.0f}")
    j, s = result["targets"]["judged"], result["summary"]
    out += ["", f"target: <= {100 * result['targets']['wait_share_max']:.0f} % waiting at {j['dataset']} / "
                f"{j['size']} / {j['source']} / {j['workers']} workers -> {_pct(s['wait_share'])} % "
                f"({'met' if s['meets_target'] else 'NOT met'})"]
    return "\n".join(out)


def add_pipeline_parser(sub) -> None:
    """Register the ``pipeline`` sub-command on :mod:`bevlib.bench`'s sub-parsers."""
    sp = sub.add_parser("pipeline", help="Table I input pipeline: keyframes/s delivered vs training steps/s, "
                                         "share of a step waiting for data")
    sp.add_argument("--steps", type=int, default=None,
                    help="timed batches/steps after the first (default 8; 2 with --quick)")
    sp.add_argument("--workers", type=int, nargs="+", default=None,
                    help="DataLoader worker counts (default 0 1 2; 0 1 with --quick)")
    sp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    sp.add_argument("--paper", action="store_true",
                    help="also time the paper-size step (batch 1, ~26 s and ~10 GiB a step on 2 CPU cores)")
    sp.add_argument("--paper-steps", type=int, default=2, help="timed paper-size steps after the first (default 2)")
    sp.add_argument("--no-real", action="store_true", help="skip the real keyframe")
    sp.add_argument("--dataroot", default=None, help="a nuScenes-layout folder instead of the embedded world")
    sp.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/pipeline.json)")
    sp.add_argument("--quick", action="store_true", help="smoke sizes on a tiny world, few steps, for tests")


def run_pipeline(a, emit) -> int:
    """Run the ``pipeline`` sub-command from parsed ``a``; ``emit`` is :func:`bevlib.bench._emit`."""
    result = bench_pipeline(steps=a.steps if a.steps is not None else (2 if a.quick else 8),
                            workers=a.workers if a.workers is not None else ((0, 1) if a.quick else WORKERS),
                            threads=a.threads, quick=a.quick, paper=a.paper, paper_steps=a.paper_steps,
                            real=not a.no_real, dataroot=a.dataroot)
    return emit(result, a.out, "pipeline", format_pipeline_table)
