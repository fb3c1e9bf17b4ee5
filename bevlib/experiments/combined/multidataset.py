"""Tables 4, 5 and 6 and Figs. 3/4 of the combined-datasets paper (Sec. 4.3, Appendix A Table 8, Appendix D)
on the three rig worlds (``notebooks/combined_multidataset.ipynb``).

* Table 4: pre-training on the nuScenes-like world only, on the three worlds mixed without prompts and
  with PromptNorm (Eq. 5); all fine-tuned on 20 % of the nuScenes-like world (lr ``multi_pretrain_lr``,
  the paper's 2e-4 setting).
* Table 5: the prompt at fine-tuning: the mixed model without prompt training ("W/o prompt", Table 4's
  runs), the prompted model with the nuScenes prompt ("Correspond": each nuScenes sample's own) and
  with the ONCE prompt ("Wrong").
* Table 6: Table 8's three data volumes, scaled by ``nuscenes_frames / 28,130`` (100K is Table 4's
  prompted mixture; its runs are shared).
* Figs. 3/4: BEV heatmaps of the camera branch for one Lyft-like val keyframe under each dataset's
  prompt and from the model without prompt training, and the interactive version.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .study import RIG_TITLES, RIGS, CombinedStudyParams, StudyWorlds, finetune_run, pretrain_run, table8_counts, write_study_table

@dataclass
class MultidatasetParams(CombinedStudyParams):
    """Every knob of notebooks/combined_multidataset.ipynb (:class:`.study.CombinedStudyParams`)."""

    output_name: str = "combined_multidataset"


#: Table 4 rows -> (rigs, prompt).
TABLE4 = {"Single dataset": (("nuscenes",), False), "Multi-dataset w/o prompt": (RIGS, False),
          "Multi-dataset w/ prompt": (RIGS, True)}
#: Table 5 rows -> (Table 4 row whose pre-training is fine-tuned, prompt mode at fine-tuning).
TABLE5 = {"W/o prompt": ("Multi-dataset w/o prompt", "own"), "Correspond": ("Multi-dataset w/ prompt", "own"),
          "Wrong": ("Multi-dataset w/ prompt", RIGS.index("once"))}
#: The paper's BEV segmentation mIoU (mean, std), Tables 4-6.
REPORTED4 = {"Single dataset": {"miou": (38.9, 0.1)}, "Multi-dataset w/o prompt": {"miou": (39.6, 0.4)},
             "Multi-dataset w/ prompt": {"miou": (41.4, 0.1)}}
REPORTED5 = {"W/o prompt": {"miou": (39.6, 0.4)}, "Correspond": {"miou": (41.4, 0.1)}, "Wrong": {"miou": (41.2, 0.1)}}
REPORTED6 = {"40K Frame": {"miou": (38.9, 0.2)}, "100K Frame": {"miou": (41.4, 0.1)},
             "250K Frame": {"miou": (42.3, 0.3)}}
REF = "paper, nuScenes + Lyft + ONCE"


def volume_counts(p) -> str:
    """The scaled Table 8 volumes as text, e.g. ``"40K: 15+15+15, 100K: 32+26+57, 250K: 32x4+26x4+228"``
    (nuScenes + Lyft + ONCE keyframes x repeat)."""
    return ", ".join(f"{v}: " + "+".join(f"{n}x{r}" if r > 1 else str(n) for n, r in table8_counts(p, v))
                     for v in ("40K", "100K", "250K"))


def run_tables(worlds: StudyWorlds) -> dict:
    """Pre-train and fine-tune every row of Tables 4-6 for every seed (finished runs are reused).

    Returns: ``{"table4": {row: [record per seed]}, "table5": ..., "table6": ..., "runs": {Table 4 row or
    volume: [pre-training run per seed]}}``; a record holds ``seed``, ``miou``, ``per_class``, ``run_dir``.
    """
    p = worlds.params
    lr = p.multi_pretrain_lr
    c100 = table8_counts(p, "100K")
    runs: dict = {}
    for row, (rigs, prompt) in TABLE4.items():
        counts = [c100[RIGS.index(r)] for r in rigs]
        runs[row] = [pretrain_run(worlds, "ours", s, rigs, counts, prompt, lr, tag="100K-" + "+".join(rigs))
                     for s in p.seeds]
    for vol in ("40K", "250K"):
        runs[vol] = [pretrain_run(worlds, "ours", s, RIGS, table8_counts(p, vol), True, lr, tag=f"{vol}-mixed")
                     for s in p.seeds]
    runs["100K"] = runs["Multi-dataset w/ prompt"]
    prompted = {row: prompt for row, (_, prompt) in TABLE4.items()}
    done: dict = {}

    def record(key, prompt, mode, i):
        if (key, mode, i) not in done:
            done[(key, mode, i)] = {"seed": p.seeds[i],
                                    **finetune_run(worlds, runs[key][i], p.seeds[i], prompt, mode)}
        return done[(key, mode, i)]

    n = range(len(p.seeds))
    return {"table4": {row: [record(row, prompted[row], "own", i) for i in n] for row in TABLE4},
            "table5": {row: [record(src, prompted[src], mode, i) for i in n] for row, (src, mode) in TABLE5.items()},
            "table6": {f"{v} Frame": [record(v if v != "100K" else "Multi-dataset w/ prompt", True, "own", i)
                                      for i in n] for v in ("40K", "100K", "250K")},
            "runs": runs}


def write_tables(results: dict, worlds: StudyWorlds, out_dir, caption: str) -> list[Path]:
    """``table4`` / ``table5`` / ``table6`` (mean ± std, reported beside) and their ``_seeds`` tables."""
    p = worlds.params
    scale = (f" Table 8 volumes scaled by {p.nuscenes_frames}/28130 keyframes per paper frame, nuScenes-like + "
             f"Lyft-like + ONCE-like train keyframes x repeat: {volume_counts(p)}.")
    paths = write_study_table(results["table4"], out_dir, "table4", caption + scale, "Table 4 (pre-training data).",
                              REPORTED4, REF)
    paths += write_study_table(results["table5"], out_dir, "table5", caption, "Table 5 (prompt at fine-tuning).",
                               REPORTED5, REF)
    paths += write_study_table(results["table6"], out_dir, "table6", caption + scale, "Table 6 (data volume).",
                               REPORTED6, REF)
    return paths


def heatmap_models(worlds: StudyWorlds, results: dict, seed_index: int = 0):
    """(prompted model, model without prompt training) of the mixed 100K pre-training, one seed, in eval mode."""
    from .finetune import load_pretrained

    p = worlds.params
    lr = p.multi_pretrain_lr
    prompted = load_pretrained(p.combined_config(prompt=True, lr=lr), results["runs"]["Multi-dataset w/ prompt"][seed_index])
    plain = load_pretrained(p.combined_config(prompt=False, lr=lr), results["runs"]["Multi-dataset w/o prompt"][seed_index])
    return prompted, plain


def heatmap_items(worlds: StudyWorlds, per_rig: int = 4) -> list:
    """The first ``per_rig`` val keyframes of each rig world (Lyft-like first, the figure's sample), each
    item tagged with its rig's dataset index."""
    from .data import KeyframeItems

    cfg = worlds.params.combined_config()
    items = []
    for rig in ("lyft", "nuscenes", "once"):
        w = worlds[rig]
        ds = KeyframeItems(w.nusc, w.val_tokens[:per_rig], cfg.image_wh, RIGS.index(rig), cfg.point_feature)
        items += [ds[i] for i in range(len(ds))]
    return items


def fig3(worlds: StudyWorlds, results: dict, path, sample: int = 0) -> Path:
    """Figs. 3/4: the camera branch's BEV heatmap of Lyft-like val keyframe ``sample`` under the nuScenes,
    Lyft and ONCE prompts of the prompted model, and from the model without prompt training (x forward)."""
    from .data import collate_keyframes
    from .heatmaps import heatmap_figure

    prompted, plain = heatmap_models(worlds, results)
    items = heatmap_items(worlds, per_rig=sample + 1)
    batch = collate_keyframes([items[sample]])
    prompts = {f"{RIG_TITLES[r]} prompt": RIGS.index(r) for r in RIGS}
    return heatmap_figure(prompted, batch, prompts, path, baseline=plain,
                          title=f"Camera-branch BEV heatmaps, {RIG_TITLES['lyft']} val keyframe {sample} (x forward)")


def heatmap_view(worlds: StudyWorlds, results: dict, per_rig: int = 4):
    """The interactive Figs. 3/4 (:func:`.heatmaps.heatmap_widget`): prompt and sample chosen with widgets."""
    from .heatmaps import heatmap_widget

    prompted, plain = heatmap_models(worlds, results)
    view = heatmap_widget(prompted, heatmap_items(worlds, per_rig), list(RIGS), baseline=plain)
    view.update()
    return view


def direction_check(out_dir) -> list:
    """The paper's Table 4-6 findings (:mod:`.claims`) on this run's ``table4_seeds.csv`` ..
    ``table6_seeds.csv`` (paired by seed); writes ``direction_check.csv`` / ``.md``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("combined", out_dir, ("table4_seeds.csv", "table5_seeds.csv", "table6_seeds.csv"),
                 "The combined-datasets paper's Table 4-6 findings (BEV segmentation) against this run's seeds "
                 "(paired by seed; 95 % t-interval).")
