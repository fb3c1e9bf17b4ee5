"""lukkassen2024 Sec. 4.5 on trained study models: Table 5 (per-class cross-modal cosine at the
ViT encoder output), Fig. 7 (t-SNE of decoder-output point and pixel features, the same samples for
every model) and Fig. 8 (cosine similarity of one query pixel against the image and the sweep)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...classes import IGNORE, NUSCENES_LIDARSEG_16
from .study_tasks import SHARED_CLASSES, _lidar_point_decoder_features, cosine_update, predict_classes, shared_cosines

#: Table 5's columns: the model pairs whose camera and LiDAR features are compared.
#: "separate": CameraViT (camera) and the RangeViT fine-tuned from it (LiDAR).
MODEL_COLUMNS = {"separate": ("cameravit", "rangevit_cam"), "joint": ("multivit", "multivit"),
                 "joint, pull": ("multivit_pull", "multivit_pull"),
                 "joint, pull + push": ("multivit_pullpush", "multivit_pullpush")}


@dataclass
class Branches:
    """A camera model and a LiDAR model (the two branches of one MultiViT, or CameraViT + RangeViT)."""

    camera: torch.nn.Module
    lidar: torch.nn.Module


def branches(models: dict, column: str) -> Branches:
    """The camera / LiDAR branches of a Table 5 column from ``{row id: loaded model}``."""
    cam_row, lid_row = MODEL_COLUMNS[column]
    cam, lid = models[cam_row], models[lid_row]
    return Branches(getattr(cam, "camera", cam), getattr(lid, "lidar", lid))


def val_pairs(data, max_pairs: int | None = None) -> dict:
    """All aligned (range crop, camera image) pairs of the val keyframes without augmentation, as
    one :func:`collate_pairs` batch (``max_pairs``: the first n)."""
    from ...range_view import RangeProjection
    from .camera_data import AlignedPairDataset, collate_pairs

    p = data.params
    ds = AlignedPairDataset(data.val_sweeps, data.val_items, RangeProjection(H=p.range_hw[0], W=p.range_hw[1], row="ring"),
                            p.crop_w, train=False)
    n = len(ds) if max_pairs is None else min(max_pairs, len(ds))
    return collate_pairs([ds[i] for i in range(n)])


def _chunks(pairs: dict, size: int):
    """Split a collated pair batch into batches of ``size`` pairs (points re-indexed)."""
    n = pairs["cam_image"].shape[0]
    for s in range(0, n, size):
        e = min(n, s + size)
        keep = (pairs["batch"] >= s) & (pairs["batch"] < e)
        out = {k: pairs[k][s:e] for k in ("image", "mask", "cam_image", "cam_labels", "camera")}
        out.update({k: pairs[k][keep] for k in ("points", "u", "v", "labels")})
        out["batch"] = pairs["batch"][keep] - s
        yield out


@torch.no_grad()
def forward_pairs(br: Branches, pairs: dict, batch_size: int = 6) -> list[tuple[dict, dict, dict]]:
    """Run both branches on the pairs: a list of (pair batch, LiDAR output, camera output)."""
    out = []
    for b in _chunks(pairs, batch_size):
        out.append((b, br.lidar(b["image"], b["points"], b["u"], b["v"], b["batch"]), br.camera(b["cam_image"])))
    return out


def table5_column(br: Branches, pairs: dict, dim: int, correct_only: bool = True, level: str = "encoder") -> dict:
    """Per-class cosine (``<class>_cos``) and ``mean_cos`` of one Table 5 column on the pairs.

    Args:
        correct_only: the paper's correctly predicted points / pixels; else every labelled one.
        level: ``"encoder"`` (the ViT output, the paper's Table 5) or ``"decoder"`` (the decoder
            output, where the contrastive loss of Sec. 4.5 acts; our addition).
        dim: feature width at that level (embed_dim or decoder_channels).
    """
    from ...metrics import ClassMeanCosine

    if level not in ("encoder", "decoder"):
        raise ValueError(f"level must be 'encoder' or 'decoder', got {level!r}")
    cmc = ClassMeanCosine(NUSCENES_LIDARSEG_16, dim)
    for b, out_l, out_c in forward_pairs(br, pairs):
        if level == "encoder":
            cosine_update(cmc, out_l, b, out_c, correct_only)
            continue
        lab_c = b["cam_labels"].clone()
        lab_c[lab_c == IGNORE] = 0
        f_l = _lidar_point_decoder_features(out_l["features"], b["u"], b["v"], b["batch"])
        ok_l = predict_classes(out_l["point_logits"]) == b["labels"] if correct_only else None
        ok_c = out_c["logits"].argmax(1) == lab_c if correct_only else None
        cmc.update("lidar", f_l, b["labels"], mask=ok_l)
        cmc.update("camera", out_c["features"], lab_c, mask=ok_c, channel_dim=1)
    return shared_cosines(cmc)


def add_decoder_cosines(data, runs: dict, results: dict) -> dict:
    """Add ``mean_cos_dec`` (mean cross-modal cosine of the class means at the DECODER output,
    every labelled val-pair point / pixel; where the contrastive loss acts) to every MultiViT run's
    final metrics in ``results`` (:func:`bevlib.experiments.multivit.final_metrics`), computed from
    the run's final weights. Returns ``results`` (changed in place)."""
    from .study import load_trained

    pairs = val_pairs(data)
    for row, dirs in runs.items():
        if data.params.all_rows()[row][0] != "multivit":
            continue
        for (seed, metrics), d in zip(results[row], dirs):
            m = load_trained(d)
            col = table5_column(Branches(m.camera, m.lidar), pairs, data.params.decoder_channels, False, "decoder")
            metrics["mean_cos_dec"] = col["mean_cos"]
    return results


@torch.no_grad()
def decoder_samples(br: Branches, pairs: dict, sample: dict) -> dict:
    """Decoder-output features of the sampled points and pixels (Fig. 7).

    Args:
        sample: ``{"points": (n_p,) indices into the pairs' points, "pixels": (n_q,) flat indices
            into (B, h, w)}`` (from :func:`sample_for_tsne`), the same for every model.
    Returns: ``{"points": (n_p, C) float32, "pixels": (n_q, C) float32}`` numpy.
    """
    pts, pix = [], []
    for b, out_l, out_c in forward_pairs(br, pairs):
        pts.append(_lidar_point_decoder_features(out_l["features"], b["u"], b["v"], b["batch"]))
        f = out_c["features"]
        pix.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    return {"points": torch.cat(pts)[torch.as_tensor(sample["points"])].float().numpy(),
            "pixels": torch.cat(pix)[torch.as_tensor(sample["pixels"])].float().numpy()}


def sample_for_tsne(pairs: dict, per_class: int, seed: int) -> dict:
    """The points and pixels shown in Fig. 7: up to ``per_class`` of each shared object class per
    modality, drawn from the labels only (so every model gets the same samples).
    Returns ``{"points", "pixels", "point_labels", "pixel_labels"}`` numpy int64 arrays."""
    from .analysis import tsne_sample

    pl = pairs["labels"].numpy()
    ql = pairs["cam_labels"].reshape(-1).numpy().copy()
    ql[ql == IGNORE] = 0
    pl = np.where(np.isin(pl, SHARED_CLASSES), pl, 0)
    ql = np.where(np.isin(ql, SHARED_CLASSES), ql, 0)
    idx_p, idx_q = tsne_sample(pl, ql, per_class, seed)
    return {"points": np.asarray(idx_p), "pixels": np.asarray(idx_q), "point_labels": pl[idx_p], "pixel_labels": ql[idx_q]}


@torch.no_grad()
def query_similarity(br: Branches, pairs: dict, pair_index: int, query_xy: tuple[int, int], items=None) -> dict:
    """Fig. 8: cosine similarity of the query pixel's encoder-output feature against every pixel of
    its image and every point of its aligned range crop (encoder-output token features).

    Returns ``{"image": (h, w, 3) float in [0, 1], "pixel_sim": (h, w), "point_sim": (n,),
    "points_xy": (n, 2) pixel coordinates of the crop's points in the camera image (NaN behind
    the camera; needs ``items``, the val camera items, for K and ``lidar_T_cam``), "query_xy"}``.
    Pair ``i`` is camera ``i % 6`` of val keyframe ``i // 6`` (:class:`AlignedPairDataset`'s order)."""
    from .analysis import encoder_point_features, similarity_maps, tokens_to_pixels

    one = {k: pairs[k][pair_index:pair_index + 1] for k in ("image", "mask", "cam_image", "cam_labels", "camera")}
    keep = pairs["batch"] == pair_index
    one.update({k: pairs[k][keep] for k in ("points", "u", "v", "labels")})
    one["batch"] = torch.zeros(int(keep.sum()), dtype=torch.long)
    out_c, out_l = br.camera(one["cam_image"]), br.lidar(one["image"], one["points"], one["u"], one["v"], one["batch"])
    h, w = one["cam_image"].shape[-2:]
    pix = tokens_to_pixels(out_c["tokens"], (h, w))[0]
    pts = encoder_point_features(out_l["tokens"], one["u"], one["v"], one["batch"], (2, 8))
    x, y = query_xy
    psim, qsim = similarity_maps(pix[:, y, x], pix, pts)
    img = one["cam_image"][0].permute(1, 2, 0).numpy()
    img = (img - img.min()) / max(1e-6, float(img.max() - img.min()))
    out = {"image": img, "pixel_sim": np.asarray(psim), "point_sim": np.asarray(qsim), "query_xy": (x, y),
           "camera": int(one["camera"][0])}
    if items is not None:
        from ...geometry import invert, project
        it, c = items[pair_index // 6], pair_index % 6
        xy, _, front = project(it["K"][c].astype(np.float64), invert(it["lidar_T_cam"][c].astype(np.float64)),
                               one["points"].numpy().astype(np.float64), min_depth=0.5)
        out["points_xy"] = np.where(front[:, None], xy, np.nan)
    return out


def available_columns(models: dict) -> list[str]:
    """The Table 5 columns whose models are present in ``models`` ({row id: model})."""
    return [c for c, (a, b) in MODEL_COLUMNS.items() if a in models and b in models]


def write_table5(models: dict, pairs: dict, p, out_dir, caption: str) -> list:
    """Table 5 measured on the val pairs for every available column, beside the paper's columns
    (reported, In21k init, nuScenes mini): ``table5_cosine`` with the paper's definition (correctly
    predicted points / pixels), ``table5_cosine_all`` (every labelled point / pixel; defined even
    when a weak model predicts a class nowhere correctly) and ``table5_cosine_decoder`` (every
    labelled one at the decoder output, where the loss acts). Returns the paths (csv, md, ...)."""
    from .analysis import table5_rows, write_table5 as _write

    init = "In21k init" if p.vit_weights else "random init (the paper's Table 5: In21k init)"
    text = (f"{caption} Cosine similarity between the mean camera and mean LiDAR feature per class, over the {pairs['cam_image'].shape[0]} val (crop, image) pairs; {init}. 'separate' = "
            "CameraViT (camera) with the RangeViT fine-tuned from it (LiDAR). '-': no feature of that class in a modality.")
    paths = []
    for correct_only, level, stem, what in (
            (True, "encoder", "table5_cosine", "ViT encoder output, correctly predicted points / pixels only (the paper's)"),
            (False, "encoder", "table5_cosine_all", "ViT encoder output, every labelled point / pixel (ours)"),
            (False, "decoder", "table5_cosine_decoder", "DECODER output, where the contrastive loss acts, every "
                                                        "labelled point / pixel (ours)")):
        dim = p.embed_dim if level == "encoder" else p.decoder_channels
        measured = {f"{c} (measured)": table5_column(branches(models, c), pairs, dim, correct_only, level)
                    for c in available_columns(models)}
        paths += _write(table5_rows(measured), out_dir, f"{text} Features: {what}.", stem=stem)
    return paths


def figure7(models: dict, pairs: dict, p, out_dir) -> tuple[list, list]:
    """Fig. 7 for every available column: t-SNE of the decoder-output features of the same sampled
    points and pixels. Writes ``fig7_<column>.png``; returns (PNG paths, plotly figures)."""
    from pathlib import Path

    from .analysis import plot_tsne, plotly_tsne, tsne_embed

    sample = sample_for_tsne(pairs, p.tsne_per_class, p.tsne_seed)
    labels = np.concatenate([sample["point_labels"], sample["pixel_labels"]])
    is_cam = np.concatenate([np.zeros(len(sample["points"]), bool), np.ones(len(sample["pixels"]), bool)])
    pngs, figs = [], []
    for c in available_columns(models):
        f = decoder_samples(branches(models, c), pairs, sample)
        emb = tsne_embed(np.concatenate([f["points"], f["pixels"]]), p.tsne_seed)
        title = f"t-SNE, {c} ({len(sample['points'])} points, {len(sample['pixels'])} pixels)"
        slug = c.replace(", ", "_").replace(" + ", "_").replace(" ", "_")
        pngs.append(plot_tsne(emb, labels, is_cam, Path(out_dir) / f"fig7_{slug}.png", title=title))
        figs.append(plotly_tsne(emb, labels, is_cam, title=title))
    return pngs, figs


def _fig8_model(models: dict) -> tuple[str, Branches]:
    col = next(c for c in ("joint, pull + push", "joint, pull", "joint") if c in available_columns(models))
    return col, branches(models, col)


def figure8(models: dict, pairs: dict, data, p, path):
    """Fig. 8 for the query ``p.query_pair`` / ``p.query_xy`` (automatic: a pedestrian or car pixel,
    :func:`bevlib.experiments.multivit.study_figures.pick_query`), with MultiViT trained with the
    pull + push loss (the paper's model; the next available MultiViT otherwise). Returns the PNG path."""
    from .analysis import plot_similarity
    from .study_figures import pick_query

    pair, xy = (p.query_pair, tuple(p.query_xy)) if p.query_pair is not None else pick_query(pairs)
    col, br = _fig8_model(models)
    r = query_similarity(br, pairs, pair, xy, data.val_items)
    return plot_similarity(r["image"], r["pixel_sim"], r["points_xy"], r["point_sim"], xy, path,
                           title=f"MultiViT ({col}), val pair {pair}, query {xy}")


def figure8_widget(models: dict, pairs: dict, data):
    """Interactive Fig. 8: sliders for the val pair and the query pixel (x, y); redraws inline."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from .analysis import _similarity_figure
    from .study_figures import pick_query

    col, br = _fig8_model(models)
    n = pairs["cam_image"].shape[0]
    h, wd = pairs["cam_image"].shape[-2:]
    pair0, (x0, y0) = pick_query(pairs)

    def show(pair, x, y):
        r = query_similarity(br, pairs, pair, (x, y), data.val_items)
        fig = _similarity_figure(plt, r["image"], r["pixel_sim"], r["points_xy"], r["point_sim"], (x, y),
                                 f"MultiViT ({col}), val pair {pair}", None, None)
        plt.show()
        plt.close(fig)

    return w.interactive(show, pair=w.IntSlider(pair0, 0, n - 1), x=w.IntSlider(x0, 0, wd - 1),
                         y=w.IntSlider(y0, 0, h - 1))
