"""wozniak2025's Table 1 findings for the reproduction scoreboard (bevlib.scoreboard), judged per seed
(paired by seed) on the ablation notebook's ``table1_seeds.csv``."""
from __future__ import annotations

from ...scoreboard import register_claim

#: The per-seed table of notebooks/s3pt_ablation.ipynb (embedded default).
TABLE = "s3pt_ablation/table1_seeds.csv"

for _head, _metric in (("linear probing", "linear"), ("the mask transformer", "mask")):
    register_claim(
        paper="s3pt", name=f"vmf_beats_cribo_{_metric}", table=TABLE, a="+ vMF", b="CrIBo", metric=_metric, op=">=",
        text=f"vMF-normalised clustering improves over the CrIBo baseline ({_head})", where="Sec. 4.2, Table 1")
    register_claim(
        paper="s3pt", name=f"s3pt_beats_cribo_{_metric}", table=TABLE, a="+ vMF, M=32, 1 SK iter., depth (S3PT)",
        b="CrIBo", metric=_metric, op=">=",
        text=f"Each component brings large improvements compared to the CrIBo baseline ({_head}, all components)",
        where="Sec. 4.2, Table 1")
    register_claim(
        paper="s3pt", name=f"depth_helps_{_metric}", table=TABLE, a="+ vMF, M=32, 1 SK iter., depth (S3PT)",
        b="+ vMF, M=32, 1 SK iter.", metric=_metric, op=">=",
        text=f"Depth-guided spatial clustering improves over clustering without depth ({_head})",
        where="Sec. 4.2, Table 1")
