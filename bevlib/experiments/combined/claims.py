"""The combined-datasets paper's BEV-segmentation findings (Tables 1, 2, 4, 5, 6) for the reproduction
scoreboard (bevlib.scoreboard), judged per seed (paired by seed) on the combined notebooks' per-seed tables."""
from __future__ import annotations

from ...scoreboard import register_claim

#: The per-seed tables of notebooks/combined_pretraining.ipynb and notebooks/combined_multidataset.ipynb.
T1, T2 = "combined_pretraining/table1_seeds.csv", "combined_pretraining/table2_seeds.csv"
T4, T5, T6 = ("combined_multidataset/table4_seeds.csv", "combined_multidataset/table5_seeds.csv",
              "combined_multidataset/table6_seeds.csv")

for _name, _table, _a, _b, _text, _where in (
        ("t1_ours_beats_scratch", T1, "Ours", "Scratch",
         "Our pre-training framework improves BEV segmentation over training from scratch", "Sec. 4.2, Table 1"),
        ("t1_ours_beats_bevdistill", T1, "Ours", "BEVDistill",
         "Our pre-training outperforms the self-supervised BEVDistill baseline (BEV segmentation)", "Sec. 4.2, Table 1"),
        ("t2_mae_contributes", T2, "Full", "-L_MAE",
         "Removing the MAE loss lowers BEV segmentation (both losses contribute)", "Sec. 4.2, Table 2"),
        ("t2_cl_contributes", T2, "Full", "-L_CL",
         "Removing the contrastive loss lowers BEV segmentation (both losses contribute)", "Sec. 4.2, Table 2"),
        ("t4_prompt_beats_naive_mix", T4, "Multi-dataset w/ prompt", "Multi-dataset w/o prompt",
         "Prompt-based multi-dataset pre-training improves over naively mixing the datasets (BEV segmentation)",
         "Sec. 4.3, Table 4"),
        ("t4_prompt_beats_single", T4, "Multi-dataset w/ prompt", "Single dataset",
         "Prompt-based multi-dataset pre-training improves over a single dataset (BEV segmentation)",
         "Sec. 4.3, Table 4"),
        ("t5_wrong_prompt_beats_naive_mix", T5, "Wrong", "W/o prompt",
         "Even a mismatched prompt outperforms a naive dataset mixture (BEV segmentation)", "Sec. 4.3, Table 5"),
        ("t5_correspond_beats_wrong", T5, "Correspond", "Wrong",
         "The corresponding prompt is at least as good as a mismatched one (BEV segmentation)", "Sec. 4.3, Table 5"),
        ("t6_more_data_helps", T6, "250K Frame", "40K Frame",
         "More pre-training data improves BEV segmentation steadily (250K vs 40K frames)", "Sec. 4.4, Table 6")):
    register_claim(paper="combined", name=_name, table=_table, a=_a, b=_b, metric="miou", op=">=", text=_text,
                   where=_where)
