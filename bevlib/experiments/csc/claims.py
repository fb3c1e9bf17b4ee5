"""chen2024 CSC's LiDAR-segmentation findings (Tables 2 and 5) for the reproduction scoreboard (bevlib.scoreboard),
judged per seed (paired by seed) on the CSC notebooks' per-seed tables."""
from __future__ import annotations

from ...scoreboard import register_claim

#: The per-seed tables of notebooks/csc_table2.ipynb and notebooks/csc_ablation.ipynb.
T2, T5 = "csc_table2/table2_seeds.csv", "csc_ablation/table5_seeds.csv"

for _name, _table, _a, _b, _metric, _text, _where in (
        ("t2_csc_beats_slidr_lp", T2, "CSC", "SLidR", "lp",
         "CSC pre-training beats SLidR in linear probing (46.0 vs 38.0 mIoU)", "Sec. 4.1, Table 2"),
        ("t2_csc_beats_slidr_ft1", T2, "CSC", "SLidR", "ft1",
         "CSC beats SLidR when fine-tuning on 1 % of the labels (47.0 vs 38.2)", "Sec. 4.1, Table 2"),
        ("t2_csc_beats_slidr_ft5", T2, "CSC", "SLidR", "ft5",
         "CSC beats SLidR when fine-tuning on 5 % of the labels (57.0 vs 52.2)", "Sec. 4.1, Table 2"),
        ("t2_slidr_beats_random_lp", T2, "SLidR", "Random init.", "lp",
         "Image-to-LiDAR pre-training substantially outperforms a random initialisation (LP 38.0 vs 8.1)",
         "Sec. 4.1, Table 2"),
        ("t2_csc_beats_random_ft1", T2, "CSC", "Random init.", "ft1",
         "CSC pre-training beats a random initialisation at 1 % labels (47.0 vs 30.3)", "Sec. 4.1, Table 2"),
        ("t5_vfm_superpixels_help_lp", T5, "(2) + VFM", "(1) SP", "lp",
         "VFM superpixels instead of SLIC improve linear probing (44.0 vs 38.0)", "Sec. 4.4, Table 5"),
        ("t5_mmpb_beats_raw_prototypes_ft1", T5, "(4) + MMPB", "(3) + 3D Pro.", "ft1",
         "Blending prototypes with MMPB beats raw 3D prototypes at 1 % labels (47.0 vs 40.3)", "Sec. 4.4, Table 5"),
        ("t5_full_beats_sp_ft1", T5, "(4) + MMPB", "(1) SP", "ft1",
         "The full CSC beats SLidR's L_sp alone at 1 % labels (47.0 vs 38.2)", "Sec. 4.4, Table 5")):
    register_claim(paper="csc", name=_name, table=_table, a=_a, b=_b, metric=_metric, op=">=", text=_text,
                   where=_where)
