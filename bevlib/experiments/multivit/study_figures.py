"""Figures of the MultiViT study: the deciding rows per seed, and the query pixel of Fig. 8."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import atomic_write
from .study import row_name

#: The rows the paper's findings are decided on, in the order plotted.
DECIDING = ("rangevit", "rangevit_cam", "multivit", "multivit_pull", "multivit_pullpush")


def plot_deciding_rows(results: dict, path) -> Path:
    """Per-seed LiDAR mIoU, camera mIoU and mean cross-modal cosine of the deciding rows (one dot per
    seed, a bar at the mean): the spread behind the direction check. Returns the PNG path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("miou", "LiDAR mIoU (%)"), ("cam_miou", "camera mIoU (%)"), ("mean_cos", "mean cosine, correct (Table 5)"),
               ("mean_cos_all", "mean cosine, all labelled"), ("mean_cos_dec", "decoder cosine, all labelled"))
    rows = [r for r in (*DECIDING, "cameravit") if r in results]
    fig, axes = plt.subplots(1, 5, figsize=(23, 4.2))
    for ax, (key, label) in zip(axes, metrics):
        names, xs = [], 0
        for r in rows:
            vals = [float(m[key]) for _, m in results[r] if key in m and m[key] != "" and np.isfinite(float(m[key]))]
            if not vals:
                continue
            ax.bar(xs, np.mean(vals), color="#9bb7d4", width=0.6)
            ax.scatter(np.full(len(vals), xs), vals, color="k", s=14, zorder=3)
            names.append(row_name(r))
            xs += 1
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def pick_query(pairs: dict, classes=(7, 4)) -> tuple[int, tuple[int, int]]:
    """A default query for Fig. 8: the pair with the most pixels of the first of ``classes`` present
    (pedestrian, then car: the paper's examples), and the pixel of that class nearest its centroid.
    Returns (pair index, (x, y)); the image centre of pair 0 when no class is present."""
    lab = pairs["cam_labels"].numpy()
    for c in classes:
        counts = (lab == c).reshape(len(lab), -1).sum(1)
        if counts.max() > 0:
            i = int(counts.argmax())
            ys, xs = np.nonzero(lab[i] == c)
            k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
            return i, (int(xs[k]), int(ys[k]))
    h, w = lab.shape[-2:]
    return 0, (w // 2, h // 2)
