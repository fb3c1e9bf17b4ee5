"""lukkassen2024's findings for the reproduction scoreboard (bevlib.scoreboard), judged per seed
(paired by seed) on the tables notebook's ``multivit_seeds.csv``."""
from __future__ import annotations

from ...scoreboard import register_claim

#: The per-seed table of the tables notebook (notebooks/multivit_tables.ipynb, embedded default).
TABLE = "multivit_tables/multivit_seeds.csv"

register_claim(
    paper="multivit", name="joint_beats_finetune_scratch", table=TABLE,
    a="MultiViT (joint)", b="RangeViT (nuScenes camera-pretrained)", metric="miou", op=">=",
    text="Joint training increases the mIoU over fine-tuning after pretraining when the ViT starts from "
         "random init",
    where="Sec. 4.4, Table 4 rows 6 / 7")
register_claim(
    paper="multivit", name="camera_pretraining_helps_scratch", table=TABLE,
    a="RangeViT (nuScenes camera-pretrained)", b="RangeViT (scratch)", metric="miou", op=">=",
    text="When the model is randomly initialized the generated pixel-wise labels improve LiDAR segmentation",
    where="Sec. 5, Table 1 rows 1 / 2")
register_claim(
    paper="multivit", name="pull_push_raises_cosine", table=TABLE,
    # "sharply": 0.09 -> 0.58 in the paper; a rise of at least 0.2 is asked for here
    a="MultiViT (joint, pull + push)", b="MultiViT (joint)", metric="mean_cos", op=">=", delta=0.2,
    text="Adding the pull and push loss increases feature similarity between modalities from 0.09 to 0.58",
    where="Sec. 4.5, Table 5")
register_claim(
    paper="multivit", name="pull_push_raises_cosine_all_labelled", table=TABLE,
    # the same finding with the class means over every labelled point / pixel (ours): defined also
    # when a weak model predicts no object pixel correctly
    a="MultiViT (joint, pull + push)", b="MultiViT (joint)", metric="mean_cos_all", op=">=", delta=0.2,
    text="Adding the pull and push loss increases feature similarity between modalities (class means over all "
         "labelled points and pixels)",
    where="Sec. 4.5, Table 5")
register_claim(
    paper="multivit", name="pull_push_raises_cosine_decoder", table=TABLE,
    # where the loss acts: the decoder output (ours; the paper measures the encoder output)
    a="MultiViT (joint, pull + push)", b="MultiViT (joint)", metric="mean_cos_dec", op=">=", delta=0.2,
    text="Adding the pull and push loss increases feature similarity between modalities (at the decoder output, "
         "where the loss acts)",
    where="Sec. 4.5, Table 5")
register_claim(
    paper="multivit", name="pull_push_lowers_lidar_miou", table=TABLE,
    a="MultiViT (joint, pull + push)", b="MultiViT (joint)", metric="miou", op="<",
    text="Adding the pull and push loss decreases LiDAR segmentation performance (73.2 to 69.9)",
    where="Sec. 4.5, Table 6 rows 10 / 12")
