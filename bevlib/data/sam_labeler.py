"""SAM box prompts -> masks: lukkassen2024's own mask source (Sec. 3.1, "we use SAM [12] (the ViT-B
model) to create a mask within this bounding box").

:class:`SamBoxLabeler` is a :class:`~bevlib.data.box_labels.BoxPromptLabeler` whose masks come from
a ``transformers`` ``SamModel``: all box prompts of one image go through one forward pass (the
image encoder runs once), ``multimask_output=False`` (one mask per box), and the low-resolution
mask logits are brought back to the image size with the processor's ``post_process_masks``
(remove padding, bilinear upsampling) and thresholded.

Weights are only read from a local directory (``from_pretrained(path, local_files_only=True)``,
e.g. a copy of ``facebook/sam-vit-base``); nothing is downloaded. The processor is
``SamProcessor`` with the PIL image backend (``SamImageProcessorPil``), which transformers picks
when torchvision is absent, so no torchvision is needed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .box_labels import MIN_INSIDE, BoxPromptLabeler


def pil_sam_processor(image_size: int = 1024, mask_size: int = 256):
    """A ``SamProcessor`` on the PIL backend for a model of input size ``image_size`` (longest
    edge resized to it, padded square; SAM's default 1024) and low-res masks of ``mask_size``."""
    from transformers import SamImageProcessorPil, SamProcessor
    return SamProcessor(SamImageProcessorPil(size={"longest_edge": image_size},
                                             pad_size={"height": image_size, "width": image_size},
                                             mask_size={"longest_edge": mask_size},
                                             mask_pad_size={"height": mask_size, "width": mask_size}))


class SamBoxLabeler(BoxPromptLabeler):
    """Pseudo-labels with SAM masks prompted by the projected boxes (lukkassen2024 Sec. 3.1).

    Args:
        weights: local directory with a transformers SAM checkpoint (``config.json``, weights and
            ``preprocessor_config.json`` / ``processor_config.json``); ignored when ``model`` is given.
        model, processor: an already built ``SamModel`` and ``SamProcessor`` (e.g. a random-init
            tiny model in tests); without ``processor`` a PIL-backend one matching the model's
            ``image_size`` is built.
        mask_threshold: logit threshold of the upsampled masks (SAM's 0.0).
        device: torch device for the forward pass.
        min_inside, inflate_max, seed: as :class:`~bevlib.data.box_labels.BoxPromptLabeler`.
    Raises:
        FileNotFoundError: naming the parameter ``weights`` when it is not an existing directory.
        ValueError: neither ``weights`` nor ``model`` given.
    """

    kind = "sam"
    needs_image = True

    def __init__(self, weights: str | Path | None = None, model=None, processor=None, mask_threshold: float = 0.0,
                 device: str = "cpu", min_inside: float = MIN_INSIDE, inflate_max: float = 0.0, seed: int = 0):
        super().__init__(min_inside, inflate_max, seed)
        from transformers import SamModel, SamProcessor

        if model is None:
            if weights is None:
                raise ValueError("SamBoxLabeler needs 'weights' (a local SAM directory) or a built 'model'")
            path = Path(weights)
            if not path.is_dir():
                raise FileNotFoundError(f"parameter 'weights': SAM checkpoint directory {str(path)!r} does not exist "
                                        "(weights are only read locally, never downloaded)")
            model = SamModel.from_pretrained(str(path), local_files_only=True)
            if processor is None:
                processor = SamProcessor.from_pretrained(str(path), local_files_only=True)
            self._id = path.resolve().name
        else:
            cfg = model.config.to_json_string(use_diff=False)
            self._id = "model" + hashlib.sha256(cfg.encode()).hexdigest()[:8]
        if processor is None:
            processor = pil_sam_processor(int(model.config.vision_config.image_size))
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.mask_threshold = float(mask_threshold)

    def _tag(self) -> str:
        return f"{self._id}-t{self.mask_threshold:g}"

    def masks(self, nusc, sd_token, image, rects, boxes):
        """(M, H, W) bool SAM masks, one forward pass for all M box prompts of the image."""
        import torch

        H, W = image.shape[:2]
        if len(rects) == 0:
            return np.zeros((0, H, W), bool)
        inputs = self.processor(images=image, input_boxes=[np.asarray(rects, np.float64).tolist()], return_tensors="pt")
        with torch.inference_mode():
            out = self.model(pixel_values=inputs["pixel_values"].to(self.device),
                             input_boxes=inputs["input_boxes"].to(self.device), multimask_output=False)
        masks = self.processor.image_processor.post_process_masks(
            out.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"],
            mask_threshold=self.mask_threshold, binarize=True)[0]           # (M, 1, H, W)
        return masks[:, 0].numpy().astype(bool)
