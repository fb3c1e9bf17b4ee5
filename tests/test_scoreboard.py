"""The reproduction scoreboard: verdicts on hand-made tables (per-seed rows and mean/CI columns),
its intervals against scipy.stats, busch2026's registered claims, and notebooks/scoreboard.ipynb
run headless on hand-made outputs."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from bevlib import scoreboard as sb
from bevlib.scoreboard import Claim, Estimate, RowPattern

ROOT = Path(__file__).resolve().parents[1]
TABLE = "t/t.csv"


def write_csv(root: Path, rows: list[dict], rel: str = TABLE) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def per_seed(name: str, values, metric: str = "m", seeds=None) -> list[dict]:
    seeds = seeds if seeds is not None else range(len(values))
    return [{"method": name, "source": "measured", "seed": s, metric: v} for s, v in zip(seeds, values)]


def summary(name: str, values, metric: str = "m") -> dict:
    """A mean/CI row as a multi-seed table would carry it (computed here independently with scipy)."""
    n = len(values)
    mean = sum(values) / n
    half = (stats.t.ppf(0.975, n - 1) * stats.sem(values)) if n > 1 else ""
    return {"method": name, "source": "measured", f"{metric}_mean": mean, f"{metric}_ci95": half, "n_seeds": n}


def claim(**kw) -> Claim:
    base = dict(paper="test", name="c", text="A beats B", table=TABLE, a="A", b="B", metric="m")
    base.update(kw)
    return Claim(**base)


# ---------------------------------------------------------------- verdicts, per-seed rows

def test_held_on_per_seed_rows(tmp_path):
    write_csv(tmp_path, per_seed("A", [30.0, 31.0, 32.0]) + per_seed("B", [20.0, 20.5, 21.5]))
    r = sb.evaluate(claim(), tmp_path)
    assert (r.status, r.indicative, r.n_seeds, r.paired) == ("held", False, 3, True)
    assert r.verdict == "held"
    assert r.diff.mean == pytest.approx(31.0 - 62.0 / 3)


def test_not_held_on_per_seed_rows(tmp_path):
    write_csv(tmp_path, per_seed("A", [20.0, 21.0, 20.5]) + per_seed("B", [30.0, 31.0, 30.2]))
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "not held" and not r.indicative
    assert r.diff.interval[1] < 0


def test_inconclusive_when_the_interval_contains_zero(tmp_path):
    write_csv(tmp_path, per_seed("A", [25.0, 20.0, 27.0]) + per_seed("B", [21.0, 24.0, 22.0]))
    r = sb.evaluate(claim(), tmp_path)
    lo, hi = r.diff.interval
    assert r.diff.mean > 0 and lo < 0 < hi
    assert r.status == "inconclusive" and r.verdict == "inconclusive"


def test_fewer_seeds_than_needed_is_indicative(tmp_path):
    write_csv(tmp_path, per_seed("A", [30.0, 31.0]) + per_seed("B", [20.0, 20.5]))
    r = sb.evaluate(claim(), tmp_path)
    assert (r.status, r.indicative) == ("held", True)
    assert r.verdict == "held (indicative, 2 seeds)"
    assert sb.evaluate(claim(min_seeds=2), tmp_path).verdict == "held"


def test_one_row_per_method_is_one_seed(tmp_path):
    # the current Table I layout: one measured row per method, reported rows beside it
    write_csv(tmp_path, [{"method": "A", "source": "measured", "m": 19.0},
                         {"method": "A", "source": "reported (paper)", "m": 22.4},
                         {"method": "B", "source": "measured", "m": 20.0},
                         {"method": "B", "source": "reported (paper)", "m": 21.0}])
    r = sb.evaluate(claim(), tmp_path)
    assert r.verdict == "not held (indicative, 1 seed)"
    assert r.diff.interval is None and r.reported == (22.4, 21.0)
    row = sb.scoreboard_rows([r])[0]
    assert row["measured"] == "19.0 vs 20.0 (Δ -1.00)"
    assert row["reported"] == "22.4 vs 21.0 (Δ +1.40)"
    assert row["seeds"] == "1 (needs 3)"


def test_unpaired_seeds_use_the_welch_interval(tmp_path):
    a, b = [30.0, 31.0, 33.0], [20.0, 22.5, 21.0, 21.5]
    write_csv(tmp_path, per_seed("A", a) + per_seed("B", b, seeds=[0, 1, 2, 3]))
    r = sb.evaluate(claim(), tmp_path)
    assert not r.paired and r.n_seeds == 3
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert r.diff.interval == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_nan_seed_is_left_out(tmp_path):
    write_csv(tmp_path, per_seed("A", [30.0, "nan", 31.0, 32.0]) + per_seed("B", [20.0, 20.0, 21.0, 21.5]))
    r = sb.evaluate(claim(), tmp_path)
    assert r.a_est.n == 3 and not r.paired   # seed 1 has no value on A's side: no longer the same seeds


# ---------------------------------------------------------------- verdicts, mean/CI columns

@pytest.mark.parametrize("a, b, expected", [
    ([30.0, 31.0, 32.0], [20.0, 20.5, 21.5], "held"),
    ([20.0, 21.0, 20.5], [30.0, 31.0, 30.2], "not held"),
    ([25.0, 20.0, 27.0], [21.0, 24.0, 22.0], "inconclusive"),
])
def test_verdicts_on_mean_ci_columns(tmp_path, a, b, expected):
    write_csv(tmp_path, [summary("A", a), summary("B", b),
                         {"method": "A", "source": "reported (paper)", "m_mean": 23.0}])
    r = sb.evaluate(claim(), tmp_path)
    assert r.verdict == expected
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert r.diff.interval == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert r.reported == (23.0, None)
    row = sb.scoreboard_rows([r])[0]
    assert "±" in row["measured"] and "95 % CI" in row["measured"] and row["seeds"] == "3"


def test_mean_in_the_metric_column_as_busch2026_writes_it(tmp_path):
    # Table I with seeds: the mean stays in `miou60`, beside `miou60_ci95` and `n_seeds`; reported
    # rows leave both empty
    a, b = [30.0, 31.0, 32.0], [20.0, 20.5, 21.5]
    rows = []
    for name, v in (("A", a), ("B", b)):
        s = summary(name, v, "miou60")
        rows.append({"method": name, "source": "measured", "miou60": s["miou60_mean"],
                     "miou60_ci95": s["miou60_ci95"], "n_seeds": 3})
        rows.append({"method": name, "source": "reported (paper)", "miou60": 21.0, "miou60_ci95": "", "n_seeds": ""})
    rows.append({"method": "C", "source": "measured", "miou60": 25.0, "miou60_ci95": "", "n_seeds": ""})
    write_csv(tmp_path, rows)
    r = sb.evaluate(claim(metric="miou60"), tmp_path)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert r.verdict == "held" and r.diff.interval == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert r.reported == (21.0, 21.0)
    # a row without seeds beside a seeded one: Welch needs both spreads, so only the mean speaks
    assert sb.evaluate(claim(a="C", metric="miou60"), tmp_path).verdict == "held (indicative, 1 seed)"


def test_mean_ci_columns_with_one_seed_are_indicative(tmp_path):
    write_csv(tmp_path, [summary("A", [30.0]), summary("B", [20.0])])
    r = sb.evaluate(claim(), tmp_path)
    assert r.verdict == "held (indicative, 1 seed)" and r.diff.interval is None


def test_mean_column_without_ci_is_an_error(tmp_path):
    write_csv(tmp_path, [{"method": "A", "source": "measured", "m_mean": 1.0, "n_seeds": 3},
                         {"method": "B", "source": "measured", "m_mean": 0.0, "n_seeds": 3}])
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "error" and "m_ci95" in r.verdict


# ---------------------------------------------------------------- not run, errors, operators

def test_not_run_without_the_table(tmp_path):
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "not run" and r.verdict == f"not run (no {TABLE})"
    row = sb.scoreboard_rows([r])[0]
    assert row["measured"] == row["reported"] == row["seeds"] == ""


def test_not_run_without_a_row(tmp_path):
    write_csv(tmp_path, [{"method": "A", "source": "measured", "m": 1.0},
                         {"method": "B", "source": "reported (paper)", "m": 0.0}])   # B never measured
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "not run" and "'B'" in r.verdict


def test_not_run_without_a_value(tmp_path):
    write_csv(tmp_path, [{"method": "A", "source": "measured", "m": 1.0}, {"method": "B", "source": "measured", "m": ""}])
    assert sb.evaluate(claim(), tmp_path).status == "not run"


def test_errors_name_the_problem(tmp_path):
    write_csv(tmp_path, [{"method": "A", "source": "measured", "x": 1.0}, {"method": "B", "source": "measured", "x": 0.0}])
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "error" and "'m'" in r.verdict
    write_csv(tmp_path, [{"method": "A", "source": "measured", "m": 1.0}, {"method": "A", "source": "measured", "m": 2.0},
                         {"method": "B", "source": "measured", "m": 0.0}])
    r = sb.evaluate(claim(), tmp_path)
    assert r.status == "error" and "seed" in r.verdict


def test_operators_and_margin(tmp_path):
    write_csv(tmp_path, per_seed("A", [30.0, 31.0, 32.0]) + per_seed("B", [20.0, 20.5, 21.5]))   # A - B ~ 10.3
    assert sb.evaluate(claim(op=">=", delta=5.0), tmp_path).status == "held"
    assert sb.evaluate(claim(op=">=", delta=15.0), tmp_path).status == "not held"
    assert sb.evaluate(claim(op="<="), tmp_path).status == "not held"
    assert sb.evaluate(claim(a="B", b="A", op="<"), tmp_path).status == "held"
    assert claim(delta=1.0).statement("A", "B") == "A − B ≥ 1"
    with pytest.raises(ValueError, match="op"):
        claim(op="=>")


def test_row_patterns(tmp_path):
    names = ["ours(3ep pretrain + temp)", "ours(12ep pretrain + temp)", "ours(9ep pretrain)", "baseline"]
    assert RowPattern("ours({n}ep pretrain + temp)", "max").resolve(names) == "ours(12ep pretrain + temp)"
    assert RowPattern("ours({n}ep pretrain + temp)", "min").resolve(names) == "ours(3ep pretrain + temp)"
    assert RowPattern("ours({n}ep pretrain)", "max").resolve(names) == "ours(9ep pretrain)"
    assert RowPattern("nope({n})").resolve(names) is None
    with pytest.raises(ValueError):
        RowPattern("no placeholder")
    # one length only: both sides are the same row, so the claim cannot be checked
    write_csv(tmp_path, [{"method": "ours(1ep pretrain + temp)", "source": "measured", "m": 1.0}])
    c = claim(a=RowPattern("ours({n}ep pretrain + temp)", "max"), b=RowPattern("ours({n}ep pretrain + temp)", "min"))
    r = sb.evaluate(c, tmp_path)
    assert r.status == "not run" and "two different rows" in r.verdict


# ---------------------------------------------------------------- intervals against scipy

@pytest.mark.parametrize("values", [[1.0, 2.0], [3.0, 1.5, 2.25, 4.0], [10.0, 10.5, 9.0, 11.0, 12.5, 8.0]])
def test_t_interval_matches_scipy(values):
    e = sb.t_interval(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values), scale=stats.sem(values))
    assert e.interval == pytest.approx((lo, hi), rel=1e-12)


def test_paired_difference_matches_ttest_rel():
    a, b = [22.1, 23.4, 21.9, 22.8], [21.0, 22.9, 21.7, 21.5]
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert sb.paired_difference(a, b).interval == pytest.approx((ci.low, ci.high), rel=1e-12)
    with pytest.raises(ValueError):
        sb.paired_difference([1.0], [1.0, 2.0])


def test_welch_difference_from_summaries_matches_ttest_ind():
    a, b = [22.1, 23.4, 21.9, 22.8, 23.0], [21.0, 22.9, 21.7]
    d = sb.welch_difference(sb.t_interval(a), sb.t_interval(b))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.interval == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert sb.welch_difference(Estimate(2.0, None, 1), sb.t_interval(b)).interval is None
    assert sb.welch_difference(Estimate(2.0, 0.0, 3), Estimate(1.0, 0.0, 3)).interval == (1.0, 1.0)


# ---------------------------------------------------------------- registry

def test_registry_replaces_by_paper_and_name():
    try:
        first = sb.register_claim(paper="zz_test", name="x", text="t", table=TABLE, a="A", b="B", metric="m")
        assert first in sb.claims(["zz_test"])
        second = sb.register_claim(claim(paper="zz_test", name="x", metric="other"))
        assert sb.claims(["zz_test"]) == [second]
        with pytest.raises(TypeError):
            sb.register_claim()
        with pytest.raises(TypeError):
            sb.register_claim(second, paper="zz_test")
    finally:
        sb.unregister("zz_test")
    assert sb.claims(["zz_test"]) == []


def test_unknown_paper_is_refused_by_name():
    from bevlib.experiments import import_papers
    from bevlib.params import ParameterError
    with pytest.raises(ParameterError, match="busch2062"):
        import_papers(["busch2062"])


def test_library_does_not_import_experiments():
    code = ("import sys, bevlib.scoreboard, bevlib.tables, bevlib.params; "
            "print(any(m.startswith('bevlib.experiments') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _busch2026_claims():
    from bevlib.experiments import import_papers
    assert "busch2026" in import_papers()
    return {c.name: c for c in sb.claims(["busch2026"])}


def test_busch2026_registers_its_three_claims():
    cs = _busch2026_claims()
    assert set(cs) == {"two_phase_3ep_beats_baseline", "longer_pretraining_helps", "temporal_loss_helps_pretraining"}
    for c in cs.values():
        assert (c.table, c.metric, c.key, c.op, c.min_seeds) == ("table1_fidelity/table1.csv", "miou60", "method", ">=", 3)
    assert (cs["two_phase_3ep_beats_baseline"].a, cs["two_phase_3ep_beats_baseline"].b) == (
        "ours(3ep pretrain + temp)", "supervised baseline")
    assert (cs["temporal_loss_helps_pretraining"].a, cs["temporal_loss_helps_pretraining"].b) == (
        "self-superv. pretrain + temp", "self-supervised pretraining")
    longer = cs["longer_pretraining_helps"]
    assert isinstance(longer.a, RowPattern) and (longer.a.pick, longer.b.pick) == ("max", "min")


def test_busch2026_claims_hold_on_the_papers_own_numbers(tmp_path):
    """Table I as printed, written as if measured: every claim holds (on one 'seed'), the longest
    pretraining (27 ep) is compared with the shortest (3 ep)."""
    from bevlib.experiments.busch2026 import COLUMNS, REPORTED_TABLE1
    cs = _busch2026_claims()
    rows = [{"method": k, "source": "measured", **dict(zip(COLUMNS, v))} for k, v in REPORTED_TABLE1.items()]
    write_csv(tmp_path, rows, "table1_fidelity/table1.csv")
    results = {c.name: sb.evaluate(c, tmp_path) for c in cs.values()}
    assert all(r.verdict == "held (indicative, 1 seed)" for r in results.values()), results
    longer = results["longer_pretraining_helps"]
    assert (longer.a, longer.b) == ("ours(27ep pretrain + temp)", "ours(3ep pretrain + temp)")
    assert longer.diff.mean == pytest.approx(23.2 - 22.4)
    assert results["two_phase_3ep_beats_baseline"].diff.mean == pytest.approx(1.4)
    assert results["temporal_loss_helps_pretraining"].diff.mean == pytest.approx(0.7)


# ---------------------------------------------------------------- the notebook

@pytest.mark.slow
def test_scoreboard_notebook_smoke(tmp_path):
    outputs = tmp_path / "outputs"
    # busch2026 Table I in its current layout (one measured row per method, reported rows beside
    # them), with a single two-phase length: claim (b) cannot be checked on it
    rows = []
    for name, m in (("supervised baseline", 20.0), ("self-supervised pretraining", 5.0),
                    ("self-superv. pretrain + temp", 4.0), ("ours(3ep pretrain + temp)", 21.0)):
        rows.append({"method": name, "source": "measured", "boundary_iou": 1.0, "lane_iou": 1.0,
                     "crosswalk_iou": 1.0, "miou20": 1.0, "miou40": 1.0, "miou60": m})
    rows.append({"method": "supervised baseline", "source": "reported (busch2026, nuScenes)", "boundary_iou": 25.1,
                 "lane_iou": 26.4, "crosswalk_iou": 11.5, "miou20": 31.5, "miou40": 25.6, "miou60": 21.0})
    write_csv(outputs, rows, "table1_fidelity/table1.csv")
    r = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "scoreboard.ipynb"), str(tmp_path / "executed.ipynb"),
         "-f", str(ROOT / "params" / "scoreboard" / "smoke.yaml"), "-p", "outputs_root", str(outputs),
         "--cwd", str(ROOT / "notebooks")],
        env=dict(os.environ, BEVLIB_CACHE=str(tmp_path / "cache")), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = {row["rows"]: row for row in csv.DictReader(open(outputs / "scoreboard" / "scoreboard.csv"))}
    assert len(got) == 3 and all(row["paper"] == "busch2026" for row in got.values())
    assert got["ours(3ep pretrain + temp) ≥ supervised baseline"]["verdict"] == "held (indicative, 1 seed)"
    assert got["ours(3ep pretrain + temp) ≥ supervised baseline"]["reported"] == "– vs 21.0"
    assert got["self-superv. pretrain + temp ≥ self-supervised pretraining"]["verdict"] == "not held (indicative, 1 seed)"
    longer = [row for k, row in got.items() if k.startswith("ours(Nep pretrain + temp) [largest N]")]
    assert len(longer) == 1 and longer[0]["verdict"].startswith("not run") and longer[0]["measured"] == ""
    md = (outputs / "scoreboard" / "scoreboard.md").read_text()
    assert md.startswith("**Reproduction scoreboard.**") and "| verdict |" in md
    assert "held (indicative, 1 seed)" in open(tmp_path / "executed.ipynb").read()   # the Markdown was displayed
