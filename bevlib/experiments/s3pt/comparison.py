"""wozniak2025 (S3PT) Tables 2-3 and Fig. 7 on the embedded worlds: DINO, CrIBo and S3PT pretrained on the
default world (the nuScenes stand-in), probed with frozen backbones on the default world's camera semantics
(the nuImages stand-in) and on a second world with another look (the Cityscapes stand-in; other rig,
palette and weather, :attr:`bevlib.data.world.WorldConfig.look`); domain transfer by evaluating each
world's probe on the other world (Table 3, same frozen backbone and head, no retraining, as the paper);
and S3PT's linear-probe mIoU against the share of pretraining scenes and the pretraining length (Fig. 7).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.source import EMBEDDED, WorldParams
from ...params import ParameterError, distinct_ints
from ...tables import write_table
from .ablation import BASELINE, ROWS
from .study import (S3PTStudyParams, StudyData, mean_spread, prepare_world, pretrain_run, probe,
                    probe_task, probe_train_config, slug, student_backbone)

_S3PT_ROW = "+ vMF, M=32, 1 SK iter., depth (S3PT)"
#: Table 2's methods: name -> (S3PTConfig overrides, run name). CrIBo and S3PT are the ablation's first and
#: last rows (same runs, reused when the ablation ran with the same parameters); DINO adds multi-crop's
#: local crops (``dino_local``) and has no object terms.
METHODS = {"DINO": ({"method": "dino", "vmf": False}, "DINO"),
           "CrIBo": (dict(BASELINE), "CrIBo"),
           "S3PT": ({**BASELINE, **ROWS[_S3PT_ROW][0]}, slug(_S3PT_ROW))}
#: The two probe datasets: the default world stands in for nuImages, the second world for Cityscapes.
DATASETS = ("world", "city")
#: wozniak2025 Table 2, ViT-S/16, 500 epochs of nuScenes: (nuImages mask, nuImages linear, Cityscapes
#: mask, Cityscapes linear) mIoU, percent. Reported, not measured here.
REPORTED_TABLE2 = {"DINO": (58.19, 35.27, 53.70, 28.75), "CrIBo": (50.31, 37.94, 44.95, 30.30),
                   "S3PT": (55.70, 42.13, 55.41, 37.32)}
#: wozniak2025 Table 3, ViT-S/16: (nuI -> CS mask, nuI -> CS linear, CS -> nuI mask, CS -> nuI linear).
REPORTED_TABLE3 = {"DINO": (17.43, 19.83, 21.15, 27.40), "CrIBo": (16.91, 18.61, 19.07, 23.82),
                   "S3PT": (18.39, 22.57, 24.19, 30.89)}
_T2_COLS = ("world_mask", "world_linear", "city_mask", "city_linear")
_T3_COLS = ("world_to_city_mask", "world_to_city_linear", "city_to_world_mask", "city_to_world_linear")
_TITLES = {"world_mask": "world (nuImages stand-in) mask", "world_linear": "world linear",
           "city_mask": "city world (Cityscapes stand-in) mask", "city_linear": "city linear",
           "world_to_city_mask": "world → city mask", "world_to_city_linear": "world → city linear",
           "city_to_world_mask": "city → world mask", "city_to_world_linear": "city → world linear"}


@dataclass
class ComparisonParams(S3PTStudyParams):
    """Knobs of notebooks/s3pt_comparison.ipynb (shared ones: :class:`~.study.S3PTStudyParams`); defaults:
    the embedded default (2 CPU cores, <= 30 min)."""

    methods: tuple = ("DINO", "CrIBo", "S3PT")
    dino_local: int = 10                    # DINO's local crops (paper 10 of 96 px; ours local_size)
    city_look: str = "city"                 # look of the second world (bevlib.data.world LOOKS)
    city_seed: int = 1
    city_scenes: int = 4                    # the last 2 are its val split (>= 3)
    city_keyframes: int = 8
    city_image_wh: tuple = (400, 225)       # its native camera images (read at image_wh)
    data_shares: tuple = (0.25, 0.5, 1.0)   # Fig. 7 left: share of the train scenes S3PT pretrains on
    epoch_points: tuple = (2, 4, 6)         # Fig. 7 right: pretraining lengths (each its own run)
    fig7_seeds: tuple = (0, 1, 2)
    random_baseline: bool = True            # also probe randomly initialised backbones (Tables 2-3)
    output_name: str = "s3pt_comparison"

    def __post_init__(self):
        super().__post_init__()
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ParameterError(f"parameter 'methods' names unknown methods {bad}; known: {list(METHODS)}")
        if not isinstance(self.dino_local, int) or self.dino_local < 0:
            raise ParameterError(f"parameter 'dino_local' must be an integer >= 0, got {self.dino_local!r}")
        for n in ("city_scenes", "city_keyframes"):
            if not isinstance(getattr(self, n), int) or getattr(self, n) < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {getattr(self, n)!r}")
        if self.city_scenes < 3:
            raise ParameterError(f"parameter 'city_scenes' must be >= 3 (the world's last 2 scenes are its val split), "
                                 f"got {self.city_scenes}")
        self.data_shares = tuple(float(x) for x in self.data_shares)
        if not self.data_shares or not all(0 < x <= 1 for x in self.data_shares):
            raise ParameterError(f"parameter 'data_shares' must be numbers in (0, 1], got {self.data_shares!r}")
        self.epoch_points = tuple(self.epoch_points)
        if not self.epoch_points or not all(isinstance(e, int) and e >= 1 for e in self.epoch_points):
            raise ParameterError(f"parameter 'epoch_points' must be positive integers, got {self.epoch_points!r}")
        self.fig7_seeds = distinct_ints("fig7_seeds", self.fig7_seeds)

    def city_world(self) -> WorldParams:
        """The second world's :class:`~bevlib.data.source.WorldParams` (always embedded)."""
        return WorldParams(dataroot=EMBEDDED, version=self.version, world_seed=self.city_seed,
                           world_scenes=self.city_scenes, world_keyframes=self.city_keyframes,
                           world_image_wh=tuple(self.city_image_wh), world_look=self.city_look)

    def method_overrides(self, method: str) -> dict:
        """The :meth:`~.study.S3PTStudyParams.s3pt_config` overrides of a :data:`METHODS` name (DINO with
        ``dino_local`` local crops). Raises: KeyError for an unknown method."""
        ov = dict(METHODS[method][0])
        if method == "DINO":
            ov["n_local"] = self.dino_local
        return ov


@dataclass
class ComparisonData:
    """The two prepared worlds."""

    params: ComparisonParams
    world: StudyData
    city: StudyData


def prepare_comparison(p: ComparisonParams) -> ComparisonData:
    """Open (generating if needed) the default world and the second-look world.
    Raises: ParameterError when a world lacks a train or val split."""
    return ComparisonData(p, prepare_world(p), prepare_world(p, p.city_world()))


def transfer_miou(data_src: StudyData, run_dir, head: str, seed: int, state_dict: dict | None,
                  target: StudyData) -> dict:
    """Evaluate a probe trained on ``data_src`` (its run directory, last epoch) on ``target``'s val
    images without retraining (Table 3). Returns the metrics (``miou``, ``<class>_iou``, percent)."""
    from ...train import checkpoint_at, evaluate, load_checkpoint, resolve_device
    from .probe import ProbeImageDataset

    p = data_src.params
    task = probe_task(data_src, head, seed, state_dict)
    model = task.build_model()
    model.load_state_dict(load_checkpoint(checkpoint_at(run_dir, p.probe_epochs))["model"])
    ds = ProbeImageDataset(target.dataroot, target.val_items, task.input_hw, task.labels)
    return evaluate(task, model, ds, probe_train_config(p, seed), resolve_device("cpu"))


def run_comparison(data: ComparisonData) -> dict:
    """Tables 2-3: every method x seed pretrained on the default world, probed with each head on both
    worlds, and each probe evaluated on the other world; first "random init" (frozen random backbones,
    one per seed) when ``random_baseline``. Returns ``{method: [{"seed", "<col>": mIoU}]}`` with the
    columns of Tables 2 and 3 (percent)."""
    from ...progress import bar

    p = data.params
    methods = (["random init"] if p.random_baseline else []) + list(p.methods)
    out = {}
    for method, seed in bar([(m, s) for m in methods for s in p.seeds], desc="S3PT comparison",
                            disable=not p.progress):
        if method == "random init":
            name, state = "random_init", None
        else:
            name = METHODS[method][1]
            state = student_backbone(pretrain_run(data.world, p.method_overrides(method), name, seed))
        rec = {"seed": seed}
        for head in p.heads_eval:
            res = {ds: probe(getattr(data, ds), head, seed, name, state) for ds in DATASETS}
            for ds in DATASETS:
                rec[f"{ds}_{head}"] = res[ds]["miou"]
            rec[f"world_to_city_{head}"] = transfer_miou(data.world, res["world"]["run_dir"], head, seed, state,
                                                         data.city)["miou"]
            rec[f"city_to_world_{head}"] = transfer_miou(data.city, res["city"]["run_dir"], head, seed, state,
                                                         data.world)["miou"]
        out.setdefault(method, []).append(rec)
    return out


def share_tokens(data: StudyData, share: float, seed: int) -> list:
    """The keyframes of a seeded random ``share`` of the train scenes (at least one scene; the paper
    samples whole sequences), in scene order."""
    from ...data.nuscenes_data import scene_sample_tokens, split_scenes

    scenes = list(split_scenes(data.nusc)["train"])
    k = max(1, int(round(share * len(scenes))))
    pick = sorted(np.random.default_rng(seed).choice(len(scenes), size=k, replace=False).tolist())
    return scene_sample_tokens(data.nusc, [scenes[i] for i in pick])


def run_fig7(data: ComparisonData) -> list[dict]:
    """Fig. 7: S3PT pretrained on ``data_shares`` of the train scenes (``pretrain_epochs`` each) and for
    ``epoch_points`` epochs (all scenes), each probed linearly on the default world. Returns rows
    ``{"axis": "data share" | "epochs", "x", "seed", "linear", "n_keyframes"}``."""
    from ...progress import bar

    p = data.params
    ov, name = METHODS["S3PT"][0], METHODS["S3PT"][1]
    jobs = [("data share", x, s) for x in p.data_shares for s in p.fig7_seeds] + \
        [("epochs", e, s) for e in p.epoch_points for s in p.fig7_seeds]
    rows = []
    for axis, x, seed in bar(jobs, desc="S3PT Fig. 7", disable=not p.progress):
        if axis == "data share" and x < 1:
            tokens = share_tokens(data.world, x, seed)
            run = pretrain_run(data.world, ov, f"{name}-share{round(100 * x)}", seed, tokens=tokens)
            tag = f"{name}-share{round(100 * x)}"
        else:
            epochs = p.pretrain_epochs if axis == "data share" else int(x)
            tokens = data.world.train_tokens
            run = pretrain_run(data.world, ov, name if epochs == p.pretrain_epochs else f"{name}-ep{epochs}", seed,
                               epochs=epochs)
            tag = name if epochs == p.pretrain_epochs else f"{name}-ep{epochs}"
        res = probe(data.world, "linear", seed, tag, student_backbone(run))
        rows.append({"axis": axis, "x": x, "seed": seed, "linear": res["miou"], "n_keyframes": len(tokens)})
    return rows


def table_rows(results: dict, cols, reported: dict, label: str) -> list[dict]:
    """Mean ± 95 % over seeds per method and column, each method followed by the paper's row."""
    rows = []
    for method, recs in results.items():
        r = {"method": method, "source": "measured", "n_seeds": len(recs)}
        for c in cols:
            m, ci = mean_spread(x.get(c, float("nan")) for x in recs)
            r[c], r[f"{c}_ci95"] = round(m, 1), round(ci, 1)
        rows.append(r)
        if method in reported:
            rows.append({"method": method, "source": label, **dict(zip(cols, reported[method]))})
    return rows


def write_comparison_tables(results: dict, fig7: list[dict] | None, out_dir, caption: str, heads) -> list[Path]:
    """``table2``, ``table3`` (mean ± 95 % beside the paper's), ``comparison_seeds`` (one row per method x
    seed: the scoreboard's table), and with ``fig7`` rows ``fig7.csv/.md`` + ``fig7.png``."""
    heads = tuple(heads)
    t2 = tuple(c for c in _T2_COLS if c.rsplit("_", 1)[1] in heads)
    t3 = tuple(c for c in _T3_COLS if c.rsplit("_", 1)[1] in heads)
    rep2 = {m: tuple(v for c, v in zip(_T2_COLS, r) if c in t2) for m, r in REPORTED_TABLE2.items()}
    rep3 = {m: tuple(v for c, v in zip(_T3_COLS, r) if c in t3) for m, r in REPORTED_TABLE3.items()}
    paths = list(write_table(table_rows(results, t2, rep2, "reported (wozniak2025 Table 2, ViT-S 500 ep; nuImages / "
                                        "Cityscapes)"), out_dir, "table2", ("method", "source"), t2,
                             caption + " Probes trained and tested on the same world.", [_TITLES[c] for c in t2],
                             "Table 2.", errors={c: f"{c}_ci95" for c in t2}, extra=("n_seeds",)))
    paths += write_table(table_rows(results, t3, rep3, "reported (wozniak2025 Table 3, ViT-S; nuI → CS, CS → nuI)"),
                         out_dir, "table3", ("method", "source"), t3,
                         caption + " Domain transfer: the probe (frozen backbone + head) trained on one world, "
                         "tested on the other's val images.", [_TITLES[c] for c in t3], "Table 3.",
                         errors={c: f"{c}_ci95" for c in t3}, extra=("n_seeds",))
    seeds = [{"method": m, "source": "measured", "seed": x["seed"], **{c: round(x[c], 2) for c in t2 + t3}}
             for m, recs in results.items() for x in recs]
    paths += write_table(seeds, out_dir, "comparison_seeds", ("method", "source", "seed"), t2 + t3,
                         caption + " One row per seed.", [_TITLES[c] for c in t2 + t3], "Tables 2-3, per seed.",
                         digits=2)
    if fig7:
        paths += write_fig7(fig7, out_dir, caption)
    return paths


def fig7_seed_rows(fig7: list[dict]) -> list[dict]:
    """Fig. 7's points as scoreboard rows: ``method`` = "S3PT, <share> % data" or "S3PT, <n> epochs"."""
    def name(r):
        return f"S3PT, {round(100 * r['x'])} % data" if r["axis"] == "data share" else f"S3PT, {r['x']} epochs"
    return [{"method": name(r), "source": "measured", "seed": r["seed"], "linear": round(r["linear"], 2),
             "n_keyframes": r["n_keyframes"]} for r in fig7]


def write_fig7(fig7: list[dict], out_dir, caption: str) -> list[Path]:
    """``fig7.csv/.md`` (one row per point and seed) and ``fig7.png`` (mean ± 95 % over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...io import atomic_savefig

    paths = list(write_table(fig7_seed_rows(fig7), out_dir, "fig7", ("method", "source", "seed"), ("linear",),
                             caption + " S3PT's linear-probe mIoU on the default world against the share of train "
                             "scenes it pretrained on, and against its pretraining epochs.",
                             ["linear mIoU"], "Fig. 7.", digits=2, extra=("n_keyframes",)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, axis, xlabel in zip(axes, ("data share", "epochs"), ("pretraining data (% of train scenes)",
                                                                  "pretraining epochs")):
        xs = sorted({r["x"] for r in fig7 if r["axis"] == axis})
        stats = [mean_spread(r["linear"] for r in fig7 if r["axis"] == axis and r["x"] == x) for x in xs]
        xv = [100 * x for x in xs] if axis == "data share" else xs
        ax.errorbar(xv, [s[0] for s in stats], yerr=[0 if np.isnan(s[1]) else s[1] for s in stats], marker="o",
                    capsize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("linear-probe mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("S3PT, measured on the embedded world (mean ± 95 % over seeds)", fontsize=9)
    fig.tight_layout()
    paths.append(atomic_savefig(fig, Path(out_dir) / "fig7.png", dpi=110))
    plt.close(fig)
    return paths


def comparison_caption(data: ComparisonData) -> str:
    """What the comparison's numbers were measured on."""
    p, w, c = data.params, data.world, data.city
    return (f"Pretrained on {w.data_desc} ({len(w.train_items)} train camera images at {p.image_wh[0]}x"
            f"{p.image_wh[1]}, ViT {p.layers} layers x {p.hidden}, patch {p.patch}, {p.pretrain_epochs} epochs, "
            f"global crops {p.global_size}, DINO with {p.dino_local} local crops of {p.local_size}); probes on that "
            f"world's camera semantics ({len(w.val_items)} val images; the nuImages stand-in) and on {c.data_desc} "
            f"({len(c.train_items)} train / {len(c.val_items)} val images; the Cityscapes "
            f"stand-in), {p.probe_epochs} epochs, best of lr {list(p.probe_lrs)}; mIoU over the 22 world classes "
            f"(percent), mean ± 95 % interval over seeds {list(p.seeds)}. Reported: the paper's ViT-S/16 pretrained "
            "500 epochs on nuScenes, probed on nuImages / Cityscapes (other data).")


def direction_check(out_dir) -> list:
    """wozniak2025's Table 2-3 and Fig. 7 findings (:mod:`.claims`) on ``<out_dir>/comparison_seeds.csv``
    and ``fig7.csv`` (paired by seed); writes ``direction_check.csv`` / ``.md``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("s3pt", out_dir, ("comparison_seeds.csv", "fig7.csv"),
                 "wozniak2025's Table 2-3 and Fig. 7 findings against this run's seeds (paired by seed; 95 % "
                 "t-interval).")


def look_figure(data: ComparisonData, path, n: int = 3) -> Path:
    """The first ``n`` front-camera images of each world's val split above their semantic labels: the
    domain gap between the nuImages and Cityscapes stand-ins at a glance. Written atomically."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...classes import WORLD_CAMERA
    from ...io import atomic_savefig
    from .probe import ProbeImageDataset

    worlds = (("default world (nuImages stand-in)", data.world), (f"'{data.params.city_look}' world (Cityscapes "
                                                                    "stand-in)", data.city))
    fig, axes = plt.subplots(4, n, figsize=(3.2 * n, 7.2), squeeze=False)
    colours = np.asarray(WORLD_CAMERA.colors, np.uint8)
    for w, (title, d) in enumerate(worlds):
        front = [i for i, it in enumerate(d.val_items) if i % 6 == 1][:n]   # CAM_FRONT in the surround order
        ds = ProbeImageDataset(d.dataroot, d.val_items, (180, 320))
        for j, i in enumerate(front):
            rgb = cv2.cvtColor(cv2.imread(d.val_items[i]["image"]), cv2.COLOR_BGR2RGB)
            lab = ds.label(i)
            sem = np.where(lab[..., None] == WORLD_CAMERA.ignore_index, 0, colours[np.minimum(lab, len(colours) - 1)])
            axes[2 * w, j].imshow(rgb)
            axes[2 * w + 1, j].imshow(sem)
            axes[2 * w, j].set_title(title if j == 0 else "", fontsize=8, loc="left")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def cluster_view(data: ComparisonData, path, n_images: int = 6, seed: int | None = None):
    """Fig. 1 style: the spatial clusters of CrIBo and S3PT (their first seed's pretraining runs, reused)
    on val images of the default world, beside the image's IP-Basic-completed LiDAR depth. Writes the
    first image's panels to ``path`` (PNG) and returns the interactive widget
    (:func:`.cluster_view.cluster_widget`) over the front and back cameras of ``n_images`` / 2 val
    keyframes."""
    from . import cluster_view as cv

    p, w = data.params, data.world
    seed = p.seeds[0] if seed is None else seed
    runs = {m: pretrain_run(w, p.method_overrides(m), METHODS[m][1], seed) for m in ("CrIBo", "S3PT")}
    step = max(1, len(w.val_tokens) // max(1, n_images // 2))
    items = [(t, cam) for t in w.val_tokens[::step][:max(1, n_images // 2)] for cam in ("CAM_FRONT", "CAM_BACK")]
    tok, cam = items[0]
    image = cv.load_camera_image(w.nusc, tok, cam, p.image_wh)
    dense = cv.completed_depth(w.nusc, tok, cam, p.image_wh)[1]
    maps = {}
    for name, run in runs.items():
        net, cfg = cv.load_pretrained(run)
        r = cv.image_clusters(net, cfg, image, dense, seed=seed)
        maps[f"{name}, M={r['n_clusters']}" + (f", β={r['depth_beta']:g}" if r["depth_beta"] else "")] = r["pixels"]
    cv.cluster_figure(image, maps, dense, path, title=f"{cam}, keyframe {tok[:8]} (val)")
    return cv.cluster_widget(runs, w.nusc, items, p.image_wh, seed=seed)
