"""lukkassen2024 (MultiViT) part 2: prepare the data once (sweeps, box-derived camera pseudo-labels,
camera images), run the study's rows x seeds on the shared trainer, load trained models back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...data.nuscenes_data import CAMERAS
from ...train import TrainConfig, checkpoint_at, read_metrics, train
from .study_params import MultiViTStudyParams
from .study_tasks import CameraPretrainedRangeViTTask, CameraViTTask, MultiViTTask
from .task import load_sweeps

#: Display names of the rows (the tables' and scoreboard's ``method`` column).
ROW_NAMES = {
    "rangevit": "RangeViT (scratch)",
    "cameravit": "CameraViT",
    "rangevit_cam": "RangeViT (nuScenes camera-pretrained)",
    "multivit": "MultiViT (joint)",
    "multivit_pull": "MultiViT (joint, pull)",
    "multivit_pullpush": "MultiViT (joint, pull + push)",
}


def row_name(row: str) -> str:
    """Display name of a row id (``<row>_in21k`` -> the name with "In21k")."""
    if row.endswith("_in21k"):
        base = ROW_NAMES[row[:-len("_in21k")]]
        return base.replace("(", "(In21k, ", 1) if "(" in base else f"{base} (In21k)"
    return ROW_NAMES[row]


@dataclass
class StudyData:
    """Prepared data: devkit handle, train / val sweeps (in memory), camera items with their
    pseudo-labels (in memory), the labeller's name, a description for captions."""

    params: MultiViTStudyParams
    nusc: object
    train_sweeps: list
    val_sweeps: list
    train_items: list
    val_items: list
    labeler_name: str
    data_desc: str
    data_id: dict = field(default_factory=dict)


def make_box_labeler(p: MultiViTStudyParams, is_world: bool):
    """The camera pseudo-labeller (lukkassen2024 Sec. 3.1): SAM from ``sam_weights`` when given;
    else on the embedded world the silhouette stand-in with border errors; else (real data without
    SAM weights) the projected 3D box hulls.
    Raises: ParameterError for a real dataroot... never: the hull labeller needs no weights."""
    from ...data import box_labels

    common = {"min_inside": p.min_inside}
    if p.sam_weights is not None:
        from ...data.sam_labeler import SamBoxLabeler
        return SamBoxLabeler(p.sam_weights, **common)
    if is_world:
        return box_labels.WorldSilhouetteLabeler(border_px=p.border_px, border_flip=p.border_flip,
                                                 seed=p.labeler_seed, **common)
    return box_labels.ProjectedBoxLabeler(**common)


def prepare_study(p: MultiViTStudyParams) -> StudyData:
    """Open the data (generating the embedded world if needed), load the train and val sweeps, make
    and cache the pseudo-labels of every camera image of those keyframes, and load the camera images
    and labels at ``image_hw``.
    Raises: ParameterError when a split has no keyframe; DataError / ValueError for unreadable data."""
    from ...data.pseudo import cache_pseudo_labels
    from .camera_data import load_camera_items
    from .runs import open_split

    dataroot, desc, nusc, tr, va = open_split(p, "the MultiViT study")
    is_world = (Path(dataroot) / "bevlib_split.json").exists()
    labeler = make_box_labeler(p, is_world)
    sd = [nusc.get("sample", t)["data"][c] for t in tr + va for c in CAMERAS]
    cache_pseudo_labels(nusc, labeler, sd, progress=p.progress)
    train_items = load_camera_items(nusc, tr, labeler.name, p.image_hw, progress=p.progress)
    val_items = load_camera_items(nusc, va, labeler.name, p.image_hw, progress=p.progress)
    data_id = {"dataroot": dataroot, "version": p.version, "min_distance": p.min_distance, "labeler": labeler.name,
               "image_hw": list(p.image_hw)}
    return StudyData(p, nusc, load_sweeps(nusc, tr, p.min_distance), load_sweeps(nusc, va, p.min_distance),
                     train_items, val_items, labeler.name, desc, data_id)


def _train_config(p: MultiViTStudyParams, kind: str, n_train: int, seed: int, in21k: bool) -> TrainConfig:
    """AdamW (0.9, 0.999), weight decay 0.01, linear warm-up then cosine (lukkassen2024 Sec. 4.1);
    RangeViT ``lidar_epochs`` over the sweeps, CameraViT / MultiViT ``pair_epochs`` over the 6N pairs.
    In21k rows use half the learning rate (paper: 4e-3 instead of 8e-3)."""
    lidar = kind in ("rangevit", "rangevit_cam")
    epochs, batch = (p.lidar_epochs, p.lidar_batch) if lidar else (p.pair_epochs, p.pair_batch)
    n = n_train if lidar else 6 * n_train
    steps = -(-n // batch)
    return TrainConfig(epochs=epochs, batch_size=batch, lr=p.lr / 2 if in21k else p.lr, optimizer="adamw",
                       betas=(0.9, 0.999), weight_decay=0.01, schedule="warmup_cosine",
                       warmup_steps=int(round(p.warmup_frac * epochs * steps)), min_lr_ratio=1e-3, seed=seed,
                       device="auto")


def make_row_task(data: StudyData, row: str, camera_run: Path | None = None):
    """The task of one study row (see :data:`bevlib.experiments.multivit.study_params.ROWS`).
    ``camera_run``: the CameraViT run whose final weights initialise a ``rangevit_cam`` row.
    Raises: ValueError for a ``rangevit_cam`` row without ``camera_run``."""
    from .task import RangeViTTask

    p = data.params
    kind, contrast, in21k = p.all_rows()[row]
    stride = max(8, p.crop_w // 2)
    lcfg, ccfg = p.lidar_cfg(in21k), p.camera_cfg(in21k)
    if kind == "cameravit":
        return CameraViTTask(ccfg, data.train_items, data.val_items, p.lambda_camera, data.data_id)
    if kind == "multivit":
        return MultiViTTask(lcfg, ccfg, data.train_sweeps, data.val_sweeps, data.train_items, data.val_items,
                            p.range_hw, p.crop_w, stride, p.lambda_lidar, p.lambda_camera, contrast,
                            p.lambda_contrast, p.temperature, data.data_id)
    args = (lcfg, data.train_sweeps, data.val_sweeps, p.range_hw, p.crop_w, stride, p.lambda_lidar)
    if kind == "rangevit":
        return RangeViTTask(*args, data_id=data.data_id)
    if camera_run is None:
        raise ValueError(f"row {row!r} needs the CameraViT run it is initialised from")
    return CameraPretrainedRangeViTTask(*args, data_id=data.data_id, camera_cfg=ccfg,
                                        camera_checkpoint=str(checkpoint_at(camera_run, p.pair_epochs)))


def run_study(data: StudyData) -> dict:
    """Train every selected row with its seeds (runs are reused / resumed by the trainer's hash).

    Returns: ``{row id: [run dir per seed]}`` in row order.
    """
    p = data.params
    runs: dict = {}
    for row, (kind, _, in21k) in p.selected_rows().items():
        runs[row] = []
        for seed in p.seeds_of(row):
            camera_run = None
            if kind == "rangevit_cam":
                cam_row = "cameravit_in21k" if in21k else "cameravit"
                camera_run = _run_of_seed(runs.get(cam_row, []), seed)
                if camera_run is None:  # the pretraining ran with fewer seeds: train that seed now
                    camera_run = _train_row(data, cam_row, seed)
            runs[row].append(_train_row(data, row, seed, camera_run))
    return runs


def _train_row(data: StudyData, row: str, seed: int, camera_run: Path | None = None) -> Path:
    p = data.params
    kind, _, in21k = p.all_rows()[row]
    cfg = _train_config(p, kind, len(data.train_sweeps), seed, in21k)
    return train(make_row_task(data, row, camera_run), cfg, p.runs_root, f"{row}-s{seed}", p.progress)


def _run_of_seed(dirs, seed: int) -> Path | None:
    import json
    for d in dirs:
        if json.loads((Path(d) / "config.json").read_text())["train"]["seed"] == seed:
            return Path(d)
    return None


def final_metrics(runs: dict) -> dict:
    """``{row id: [(seed, final-epoch metrics dict)]}`` of :func:`run_study`'s runs."""
    import json
    out = {}
    for row, dirs in runs.items():
        out[row] = [(json.loads((Path(d) / "config.json").read_text())["train"]["seed"], read_metrics(d)[-1])
                    for d in dirs]
    return out


def load_trained(run_dir):
    """The final-epoch model (``torch.nn.Module``) of a study run, rebuilt from its ``config.json``
    (eval mode, CPU).
    Raises: FileNotFoundError when the run has no final checkpoint."""
    import json

    from ...models.registry import build_model
    from ...train.checkpoint import load_checkpoint

    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    task = cfg["task"]
    name = task["model_name"]
    model_cfg = {"lidar": task["lidar"], "camera": task["camera"]} if name == "multivit" else task["model"]
    model = build_model(name, model_cfg)
    model.load_state_dict(load_checkpoint(checkpoint_at(run_dir, cfg["train"]["epochs"]))["model"])
    return model.eval()


def study_caption(data: StudyData) -> str:
    """What the study's numbers were measured on, for every table's caption."""
    p = data.params
    n = len(data.train_sweeps)
    init = "random init" + (f"; In21k rows from {p.vit_weights}" if p.vit_weights else "")
    return (f"{data.data_desc}. ViT {p.depth} layers x {p.embed_dim} ({init}); range image {p.range_hw[0]}x{p.range_hw[1]}, "
            f"crops {p.crop_w}; camera images {p.image_hw[0]}x{p.image_hw[1]}. RangeViT {p.lidar_epochs} epochs over "
            f"{n} train sweeps, CameraViT / MultiViT {p.pair_epochs} over {6 * n} (crop, image) pairs; "
            f"{len(data.val_sweeps)} val keyframes ({6 * len(data.val_sweeps)} images). Camera labels: "
            f"{data.labeler_name}. Seeds {', '.join(map(str, p.seeds))} (single-seed rows: "
            f"{', '.join(p.single_seed_rows) or 'none'}); percent, mean ± 95 % interval over seeds.")
