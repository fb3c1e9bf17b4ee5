"""wozniak2025's Table 1 / Fig. 5, Tables 2-3 and Fig. 7 findings for the reproduction scoreboard (bevlib.scoreboard),
judged per seed (paired by seed) on the S3PT notebooks' per-seed tables."""
from __future__ import annotations

from ...scoreboard import RowPattern, register_claim

#: The per-seed table of notebooks/s3pt_ablation.ipynb (embedded default).
TABLE = "s3pt_ablation/table1_seeds.csv"
_VMF, _MANY = "+ vMF", "+ vMF, M=32, 1 SK iter."
_S3PT = "+ vMF, M=32, 1 SK iter., depth (S3PT)"

for _head, _metric in (("linear probing", "linear"), ("the mask transformer", "mask")):
    register_claim(
        paper="s3pt", name=f"vmf_beats_cribo_{_metric}", table=TABLE, a=_VMF, b="CrIBo", metric=_metric, op=">=",
        text=f"vMF-normalised clustering improves over the CrIBo baseline ({_head})", where="Sec. 4.1, Table 1")
    register_claim(
        paper="s3pt", name=f"many_clusters_beat_vmf_{_metric}", table=TABLE, a=_MANY, b=_VMF, metric=_metric, op=">=",
        text=f"Many clusters with one Sinkhorn-Knopp iteration improve over vMF alone ({_head})",
        where="Sec. 4.1, Table 1")
    register_claim(
        paper="s3pt", name=f"s3pt_beats_cribo_{_metric}", table=TABLE, a=_S3PT, b="CrIBo", metric=_metric, op=">=",
        text=f"Each component brings large improvements compared to the CrIBo baseline ({_head}, all components)",
        where="Sec. 4.1, Table 1")
    register_claim(
        paper="s3pt", name=f"depth_helps_{_metric}", table=TABLE, a=_S3PT, b=_MANY, metric=_metric, op=">=",
        text=f"Depth-guided spatial clustering improves over clustering without depth ({_head})",
        where="Sec. 4.1, Table 1")
register_claim(
    paper="s3pt", name="s3pt_beats_cribo_rare", table=TABLE, a=_S3PT, b="CrIBo", metric="mask_rare", op=">=",
    text="S3PT's components improve rare classes over CrIBo (mask transformer, classes under 1 % of train pixels)",
    where="Sec. 4.1, Fig. 5")

# ---- Tables 2-3 and Fig. 7 (notebooks/s3pt_comparison.ipynb)
#: The per-seed tables of notebooks/s3pt_comparison.ipynb.
COMPARISON = "s3pt_comparison/comparison_seeds.csv"
FIG7 = "s3pt_comparison/fig7.csv"
for _name, _a, _b, _metric, _text, _where in (
        ("t2_s3pt_beats_cribo_world_linear", "S3PT", "CrIBo", "world_linear",
         "With all the datasets and heads, we significantly improve over CrIBo (nuImages, linear probing)", "Table 2"),
        ("t2_s3pt_beats_cribo_city_linear", "S3PT", "CrIBo", "city_linear",
         "With all the datasets and heads, we significantly improve over CrIBo (Cityscapes, linear probing)", "Table 2"),
        ("t2_s3pt_beats_cribo_world_mask", "S3PT", "CrIBo", "world_mask",
         "With all the datasets and heads, we significantly improve over CrIBo (nuImages, mask transformer)",
         "Table 2"),
        ("t2_s3pt_beats_dino_world_linear", "S3PT", "DINO", "world_linear",
         "In linear probing, our model significantly outperformed DINO (nuImages)", "Table 2"),
        ("t2_cribo_beats_dino_world_linear", "CrIBo", "DINO", "world_linear",
         "CrIBo outperforms DINO in linear probing (nuImages)", "Table 2"),
        ("t2_dino_beats_cribo_world_mask", "DINO", "CrIBo", "world_mask",
         "CrIBo significantly underperforms DINO when using a Mask Transformer head (nuImages)", "Table 2"),
        ("t3_s3pt_beats_cribo_world_to_city_linear", "S3PT", "CrIBo", "world_to_city_linear",
         "S3PT demonstrates superior performance in domain transfer (nuImages to Cityscapes, linear, vs CrIBo)",
         "Table 3"),
        ("t3_s3pt_beats_dino_world_to_city_linear", "S3PT", "DINO", "world_to_city_linear",
         "S3PT demonstrates superior performance in domain transfer (nuImages to Cityscapes, linear, vs DINO)",
         "Table 3"),
        ("t3_s3pt_beats_cribo_city_to_world_linear", "S3PT", "CrIBo", "city_to_world_linear",
         "S3PT demonstrates superior performance in domain transfer (Cityscapes to nuImages, linear, vs CrIBo)",
         "Table 3")):
    register_claim(paper="s3pt", name=_name, table=COMPARISON, a=_a, b=_b, metric=_metric, op=">=", text=_text,
                   where=f"Sec. 4.2, {_where}")
register_claim(paper="s3pt", name="fig7_more_data_helps", table=FIG7, a=RowPattern("S3PT, {n} % data", "max"),
               b=RowPattern("S3PT, {n} % data", "min"), metric="linear", op=">=",
               text="Larger and more diverse pretraining datasets yield higher performance (linear probing)",
               where="Sec. 4.3, Fig. 7")
register_claim(paper="s3pt", name="fig7_longer_helps", table=FIG7, a=RowPattern("S3PT, {n} epochs", "max"),
               b=RowPattern("S3PT, {n} epochs", "min"), metric="linear", op=">=",
               text="Longer trainings are beneficial (linear probing)", where="Sec. 4.3, Fig. 7")
