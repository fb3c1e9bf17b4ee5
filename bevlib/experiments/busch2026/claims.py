"""busch2026's headline claims for the reproduction scoreboard (bevlib.scoreboard)."""
from __future__ import annotations

from ...scoreboard import RowPattern, register_claim

#: The claims are judged on the fidelity preset's Table I (params/table1/fidelity.yaml: three seeds,
#: the protocol in which the question can be answered on the embedded world), not on the
#: single-seed embedded default.
TABLE = "table1_fidelity/table1.csv"

register_claim(
    paper="busch2026", name="two_phase_3ep_beats_baseline", table=TABLE,
    a="ours(3ep pretrain + temp)", b="supervised baseline", metric="miou60", op=">=",
    text="Even with a short pretraining length of 3 epochs, the model still outperforms the supervised "
         "baseline in mIoU60",
    where="Sec. V-B, Table I")
register_claim(
    paper="busch2026", name="longer_pretraining_helps", table=TABLE,
    # the longest vs the shortest pretraining the preset ran (paper: 27 vs 3 epochs; embedded
    # default: 9 vs 3); the best length is not picked, since choosing it on the same numbers biases up
    a=RowPattern("ours({n}ep pretrain + temp)", "max"), b=RowPattern("ours({n}ep pretrain + temp)", "min"),
    metric="miou60", op=">=",
    text="A longer pretraining phase generally leads to better performance in the fine-tuning phase",
    where="Sec. V-B, Table I")
register_claim(
    paper="busch2026", name="temporal_loss_helps_pretraining", table=TABLE,
    a="self-superv. pretrain + temp", b="self-supervised pretraining", metric="miou60", op=">=",
    text="The temporal loss mechanism provides slight improvements in mIoU60 over the pretraining without it",
    where="Sec. V-A, Table I")
