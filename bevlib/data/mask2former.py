"""Mask2Former camera-view pseudo-labels (busch2026 Sec. III-C, Sec. IV-A).

busch2026 labels every camera image with Mask2Former (Cheng et al., CVPR 2022) trained on
Mapillary Vistas (Neuhold et al., ICCV 2017) and keeps three road-marking classes plus the ten
nuScenes detection classes that occlude markings. This module runs a ``transformers``
``Mask2FormerForUniversalSegmentation`` checkpoint from a LOCAL directory (nothing is downloaded;
e.g. ``facebook/mask2former-swin-large-mapillary-vistas-semantic`` saved with
``save_pretrained``; the paper's ResNet-50 variant is a detectron2 checkpoint and needs converting
first), and maps its classes to :data:`bevlib.classes.ALL_CLASSES` BY NAME, read from the
checkpoint's ``config.id2label``, so any Vistas label set (v1.2: 65 classes, v2.0: 124) works.

Mapping (Vistas class name -> bevlib class), case-insensitive; everything unlisted -> background:

=====================================================  =====================  ==========================
Vistas (v1.2 readable / raw names, v2.0 raw names)     bevlib                 why
=====================================================  =====================  ==========================
Curb, Curb Cut (construction--barrier--curb,           boundary               the edge of the road
construction--flat--curb-cut)
Lane Marking - General (marking--general) and every    lane                   v1.2 merges all non-
other "Lane Marking - *" / "marking--*" class                                 crosswalk markings here
Lane Marking - Crosswalk (marking--crosswalk-zebra,    crosswalk
marking--discrete--crosswalk-zebra), Crosswalk - Plain
(construction--flat--crosswalk-plain)
Car / Truck / Bus / Trailer                            same name
Caravan                                                trailer                a towed camper (nuScenes:
                                                                              any vehicle trailer)
Other Vehicle                                          construction_vehicle   tractors, construction
                                                                              machines (approximate)
Person, Other Rider, Person Group (v2.0)               pedestrian             Other Rider: approximate
Bicycle, Bicyclist                                     bicycle                nuScenes boxes include
Motorcycle, Motorcyclist                               motorcycle             the rider
Traffic Cone (v2.0 object--traffic-cone)               traffic_cone           absent from v1.2
Barrier, Guard Rail, Temporary Barrier (v2.0)          barrier
Ego Vehicle, Car Mount, Unlabeled                      IGNORE (255)           not the scene: the ray
                                                                              never reaches the ground
=====================================================  =====================  ==========================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..classes import BACKGROUND, IGNORE, class_index
from .pseudo import PseudoLabeler

try:  # transformers >= 5: the PIL backend needs no torchvision
    from transformers import Mask2FormerImageProcessorPil as _Processor
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers import Mask2FormerImageProcessor as _Processor

#: Mapillary Vistas v1.2 class names in label-id order (the 65 classes of the public
#: Mask2Former Vistas checkpoints' ``id2label``).
VISTAS_V12_CLASSES: tuple[str, ...] = (
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane",
    "Crosswalk - Plain", "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane",
    "Sidewalk", "Bridge", "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider",
    "Lane Marking - Crosswalk", "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain",
    "Vegetation", "Water", "Banner", "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera",
    "Fire Hydrant", "Junction Box", "Mailbox", "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole",
    "Traffic Sign Frame", "Utility Pole", "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)",
    "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan", "Motorcycle", "On Rails", "Other Vehicle",
    "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle",
)

#: Explicit name table (lower-case Vistas name -> bevlib class name or "ignore"); see the module
#: docstring for the reasons. Marking classes not listed fall under :func:`vistas_to_bevlib`'s rule.
VISTAS_TO_BEVLIB: dict[str, str] = {
    # road boundary
    "curb": "boundary", "curb cut": "boundary",
    "construction--barrier--curb": "boundary", "construction--flat--curb-cut": "boundary",
    # markings
    "lane marking - general": "lane", "marking--general": "lane",
    "lane marking - crosswalk": "crosswalk", "crosswalk - plain": "crosswalk",
    "marking--crosswalk-zebra": "crosswalk", "marking--discrete--crosswalk-zebra": "crosswalk",
    "construction--flat--crosswalk-plain": "crosswalk",
    # vehicles
    "car": "car", "object--vehicle--car": "car",
    "truck": "truck", "object--vehicle--truck": "truck",
    "bus": "bus", "object--vehicle--bus": "bus",
    "trailer": "trailer", "object--vehicle--trailer": "trailer",
    "caravan": "trailer", "object--vehicle--caravan": "trailer",
    "other vehicle": "construction_vehicle", "object--vehicle--other-vehicle": "construction_vehicle",
    "motorcycle": "motorcycle", "object--vehicle--motorcycle": "motorcycle",
    "motorcyclist": "motorcycle", "human--rider--motorcyclist": "motorcycle",
    "bicycle": "bicycle", "object--vehicle--bicycle": "bicycle",
    "bicyclist": "bicycle", "human--rider--bicyclist": "bicycle",
    # humans
    "person": "pedestrian", "human--person": "pedestrian", "human--person--individual": "pedestrian",
    "person group": "pedestrian", "human--person--person-group": "pedestrian",
    "other rider": "pedestrian", "human--rider--other-rider": "pedestrian",
    # static objects
    "traffic cone": "traffic_cone", "object--traffic-cone": "traffic_cone",
    "barrier": "barrier", "construction--barrier--other-barrier": "barrier",
    "guard rail": "barrier", "construction--barrier--guard-rail": "barrier",
    "temporary barrier": "barrier", "construction--barrier--temporary": "barrier",
    # not part of the scene
    "ego vehicle": "ignore", "void--ego-vehicle": "ignore",
    "car mount": "ignore", "void--car-mount": "ignore",
    "unlabeled": "ignore", "void--unlabeled": "ignore",
}


def vistas_to_bevlib(name: str) -> int:
    """bevlib class index of a Mapillary Vistas class name (any version, readable or raw).

    Looks ``name`` up (case-insensitively) in :data:`VISTAS_TO_BEVLIB`; unlisted marking classes
    ("Lane Marking - ..." / "marking--..." / "marking-only--...") map to crosswalk when their
    name mentions a crosswalk and to lane otherwise; everything else is background.

    Returns: an index into :data:`bevlib.classes.ALL_CLASSES`, or :data:`bevlib.classes.IGNORE`.
    """
    key = " ".join(str(name).strip().lower().split())
    target = VISTAS_TO_BEVLIB.get(key)
    if target is None and (key.startswith("lane marking") or key.startswith("marking")):
        target = "crosswalk" if "crosswalk" in key else "lane"
    if target is None:
        return BACKGROUND
    return IGNORE if target == "ignore" else class_index(target)


def label_lookup(id2label: dict) -> np.ndarray:
    """Lookup table from a checkpoint's class ids to bevlib classes.

    Args: id2label: ``{id: name}`` (int or str ids, as in ``config.id2label``).
    Returns: (max id + 1,) uint8; ``lut[vistas_id]`` is the bevlib class (or IGNORE).
    """
    ids = {int(k): v for k, v in id2label.items()}
    lut = np.full(max(ids) + 1, BACKGROUND, dtype=np.uint8)
    for i, name in ids.items():
        lut[i] = vistas_to_bevlib(name)
    return lut


class Mask2FormerLabeler(PseudoLabeler):
    """busch2026's pseudo-labeller: Mask2Former semantic segmentation mapped to bevlib classes.

    Args:
        weights_path: local directory of a ``Mask2FormerForUniversalSegmentation`` checkpoint (and
            its ``preprocessor_config.json``; without one the default Mask2Former processor is
            used). Only names the labeller when ``model`` is given.
        device: torch device the model runs on.
        model, processor: an already built model / image processor (tests, notebooks).
    Raises:
        FileNotFoundError: ``weights_path`` does not exist (and no ``model`` was given).
        ValueError: neither ``weights_path`` nor ``model`` given.

    ``name`` is ``"mask2former-<basename of weights_path>"`` (the cache directory name).
    """

    def __init__(self, weights_path: str | None, device: str | torch.device = "cpu", model=None, processor=None):
        if model is None:
            if weights_path is None:
                raise ValueError("Mask2FormerLabeler needs weights_path or a model")
            path = Path(weights_path).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"Mask2Former weights not found: {path} (a local checkpoint directory; "
                                        f"nothing is downloaded)")
            from transformers import Mask2FormerForUniversalSegmentation
            model = Mask2FormerForUniversalSegmentation.from_pretrained(str(path), local_files_only=True)
            if processor is None:
                processor = (_Processor.from_pretrained(str(path), local_files_only=True)
                             if (path / "preprocessor_config.json").exists() else _Processor())
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor if processor is not None else _Processor()
        self.lut = label_lookup(self.model.config.id2label)
        base = Path(weights_path).name if weights_path is not None else "random"
        self.name = base if base.startswith("mask2former") else f"mask2former-{base}"

    @classmethod
    def random_init(cls, id2label: dict | None = None, seed: int = 0, shortest_edge: int = 128,
                    device: str | torch.device = "cpu") -> "Mask2FormerLabeler":
        """A tiny randomly initialised Mask2Former (Swin backbone) for tests; no download.

        Args:
            id2label: label set; default the Mapillary Vistas v1.2 classes.
            seed: initialisation seed (the global RNG state is left untouched).
            shortest_edge: the processor resizes images to this shortest side (pixels).
        Returns: a labeller named ``"mask2former-random-seed<seed>"``; its labels are noise.
        """
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
        if id2label is None:
            id2label = dict(enumerate(VISTAS_V12_CLASSES))
        swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
        config = Mask2FormerConfig(backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
                                   encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=2,
                                   num_attention_heads=2, dim_feedforward=64, num_queries=8,
                                   id2label={int(k): v for k, v in id2label.items()})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Mask2FormerForUniversalSegmentation(config)
        processor = _Processor(size={"shortest_edge": shortest_edge, "longest_edge": 4 * shortest_edge})
        return cls(f"random-seed{seed}", device=device, model=model, processor=processor)

    @torch.no_grad()
    def predict(self, image) -> np.ndarray:
        """Label one RGB image.

        Semantic fusion as Mask2Former's semantic inference: per-pixel class scores
        ``sum_q softmax(class_q)[c] * sigmoid(mask_q)`` (the "no object" class dropped), computed
        at the mask resolution, resized bilinearly to the full image, argmax, then mapped to bevlib.

        Args: image: PIL image or (H, W, 3) uint8 array.
        Returns: (H, W) uint8 bevlib class indices (or IGNORE) at the image's resolution.
        """
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        image = image.convert("RGB")
        W, H = image.size
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device)
        out = self.model(pixel_values=pixel_values)
        scores = torch.einsum("bqc,bqhw->bchw", out.class_queries_logits.softmax(-1)[..., :-1],
                              out.masks_queries_logits.sigmoid())
        mask = inputs.get("pixel_mask")
        if mask is not None:
            # Drop padding the processor may add so the scores cover exactly the image.
            h_in, w_in = pixel_values.shape[-2:]
            vh, vw = int(mask[0].any(1).sum()), int(mask[0].any(0).sum())
            sh, sw = scores.shape[-2:]
            scores = scores[..., :max(1, round(sh * vh / h_in)), :max(1, round(sw * vw / w_in))]
        scores = F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)
        pred = scores[0].argmax(0).cpu().numpy()
        return self.lut[pred]

    def label(self, nusc, sample_data_token: str) -> np.ndarray:
        """Pseudo-label of one nuScenes camera ``sample_data`` (see :meth:`PseudoLabeler.label`).

        Returns: (H, W) uint8 at the image's full resolution (nuScenes: 900 x 1600).
        Raises: FileNotFoundError naming the image when it is missing.
        """
        path = Path(nusc.get_sample_data_path(sample_data_token))
        if not path.exists():
            raise FileNotFoundError(f"camera image {path} of sample_data {sample_data_token} is missing")
        with Image.open(path) as im:
            return self.predict(im)


__all__ = ["Mask2FormerLabeler", "VISTAS_V12_CLASSES", "VISTAS_TO_BEVLIB", "vistas_to_bevlib", "label_lookup"]
