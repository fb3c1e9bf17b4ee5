"""The reproduction scoreboard: each paper's headline claims, checked against its latest tables.

A :class:`Claim` says "in table T, row A's metric M is >= row B's" (or ``>``, ``<=``, ``<``, with an
optional margin ``delta``: ``A - B >= delta``). Each paper registers its claims from its own
experiment module (``bevlib/experiments/<paper>.py``) with :func:`register_claim`; the library
never imports an experiment module, so ``bevlib.experiments.import_papers()`` imports them (which
fills the registry) before :func:`claims` is read. ``notebooks/scoreboard.ipynb`` evaluates every
registered claim on ``outputs/`` and writes ``outputs/scoreboard/scoreboard.{csv,md}``.

Tables are the shared writer's CSVs (:func:`bevlib.tables.write_table`): a key column (``method``)
names a row and a ``source`` column says ``measured`` or ``reported (...)`` (a table without a
``source`` column is all measured). Several seeds appear either as one measured row per seed (a
``seed`` column) or as one summary row: the mean in ``<metric>_mean`` or in ``<metric>`` itself
(busch2026's Table I), ``<metric>_ci95`` (half-width of the 95 % t-interval over seeds) and
``n_seeds`` (empty: one seed).

Verdicts (``d = A - B``, the claim ``d >= delta``; the other operators alike):

* ``held``: the mean of ``d`` satisfies the claim and its 95 % interval lies wholly on the
  claim's side of ``delta``;
* ``not held``: the whole interval lies on the other side;
* ``inconclusive``: the interval contains ``delta``;
* ``... (indicative, n seeds)``: fewer seeds than the claim needs (``Claim.min_seeds``); the
  verdict then follows the mean alone (``held`` or ``not held``);
* ``not run``: the table, a measured row or its value is missing;
* ``error``: the table exists but cannot answer the claim (no such column, duplicate rows).
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .params import ParameterError
from .paths import outputs_dir, project_root
from .tables import write_table

#: Operators a claim may use, as printed in the scoreboard.
OPERATORS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}
#: Confidence level of every interval (the tables' ``<metric>_ci95`` columns).
CONFIDENCE = 0.95
#: The scoreboard's columns (all text), in order.
SCOREBOARD_KEYS = ("paper", "claim", "table", "rows", "metric", "measured", "reported", "seeds", "verdict")


@dataclass(frozen=True)
class RowPattern:
    """A row chosen among the table's measured rows by a number in its name.

    ``RowPattern("ours({n}ep pretrain + temp)", "max")`` is the row with the largest ``n`` present
    (e.g. ``ours(9ep pretrain + temp)`` on the embedded default, ``ours(27ep ...)`` in the paper),
    so a claim about "the longest pretraining" follows whichever lengths a preset ran.

    Args:
        template: the row name with ``{n}`` where an integer stands.
        pick: ``"max"`` or ``"min"``: the largest or smallest ``n`` present.
    Raises: ValueError for a template without exactly one ``{n}`` or another ``pick``.
    """

    template: str
    pick: str = "max"

    def __post_init__(self):
        if self.template.count("{n}") != 1:
            raise ValueError(f"RowPattern template needs exactly one '{{n}}', got {self.template!r}")
        if self.pick not in ("max", "min"):
            raise ValueError(f"RowPattern pick must be 'max' or 'min', got {self.pick!r}")

    def resolve(self, names: Iterable[str]) -> str | None:
        """The matching name with the largest / smallest ``n`` among ``names``; None if none match."""
        before, after = self.template.split("{n}")
        rx = re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"\Z")
        found = {int(m.group(1)): name for name in names if (m := rx.match(name))}
        if not found:
            return None
        return found[max(found) if self.pick == "max" else min(found)]

    def __str__(self) -> str:
        return f"{self.template.replace('{n}', 'N')} [{'largest' if self.pick == 'max' else 'smallest'} N]"



@dataclass(frozen=True)
class Claim:
    """One headline claim of a paper, checkable on one of its tables.

    Args:
        paper: the paper's short name (``"busch2026"``), its module in ``bevlib.experiments``.
        name: an identifier unique within the paper (re-registering it replaces the claim).
        text: the claim in the paper's words (no ``|``: it goes into a Markdown table).
        table: the CSV, relative to ``outputs/`` (``"table1/table1.csv"``).
        a, b: the rows compared: a row name (the ``key`` column) or a :class:`RowPattern`.
        metric: the column compared (``"miou60"``); higher is better unless ``op`` says otherwise.
        op: ``">="``, ``">"``, ``"<="`` or ``"<"``: the claim is ``A - B <op> delta``.
        delta: the margin (0: a plain comparison of A and B), in the metric's units.
        min_seeds: seeds needed for a confident verdict; fewer give an "indicative" one.
        where: where the paper makes the claim (section, table), for the reader.
        key: the column naming a row.
    Raises: ValueError for an unknown ``op``, ``min_seeds < 1`` or a ``|`` in the text.
    """

    paper: str
    name: str
    text: str
    table: str
    a: str | RowPattern
    b: str | RowPattern
    metric: str
    op: str = ">="
    delta: float = 0.0
    min_seeds: int = 3
    where: str = ""
    key: str = "method"

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise ValueError(f"claim {self.paper}/{self.name}: op must be one of {sorted(OPERATORS)}, got {self.op!r}")
        if not isinstance(self.min_seeds, int) or self.min_seeds < 1:
            raise ValueError(f"claim {self.paper}/{self.name}: min_seeds must be a positive integer, got {self.min_seeds!r}")
        if "|" in self.text:
            raise ValueError(f"claim {self.paper}/{self.name}: '|' in the text would break the Markdown table")

    def statement(self, a: str | None = None, b: str | None = None) -> str:
        """The comparison in words, with resolved row names if given: ``"A ≥ B"`` or ``"A − B ≥ 1.0"``."""
        a, b, op = a or str(self.a), b or str(self.b), OPERATORS[self.op]
        return f"{a} − {b} {op} {self.delta:g}" if self.delta else f"{a} {op} {b}"


_REGISTRY: dict[tuple[str, str], Claim] = {}


def register_claim(claim: Claim | None = None, /, **fields) -> Claim:
    """Add a claim to the registry: ``register_claim(Claim(...))`` or ``register_claim(paper=..., ...)``
    with :class:`Claim`'s fields. A claim with the same ``(paper, name)`` is replaced in place (a
    module imported twice, e.g. under ``python -m``, registers nothing twice).

    Returns: the registered claim. Raises: TypeError for both or neither form; ValueError from Claim.
    """
    if (claim is None) == (not fields):
        raise TypeError("register_claim takes either a Claim or Claim's fields as keywords")
    claim = claim if claim is not None else Claim(**fields)
    _REGISTRY[(claim.paper, claim.name)] = claim
    return claim


def claims(papers: Sequence[str] | None = None) -> list[Claim]:
    """The registered claims in registration order, optionally only those of ``papers``.

    Only papers whose experiment modules were imported have registered anything:
    ``bevlib.experiments.import_papers()`` imports them all.
    """
    return [c for c in _REGISTRY.values() if papers is None or c.paper in papers]


def unregister(paper: str, name: str | None = None) -> None:
    """Remove one claim, or every claim of ``paper`` (tests)."""
    for k in [k for k in _REGISTRY if k[0] == paper and (name is None or k[1] == name)]:
        del _REGISTRY[k]


# ---------------------------------------------------------------- statistics

def _tcrit(df: float) -> float:
    from scipy import stats
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


@dataclass(frozen=True)
class Estimate:
    """A mean with the half-width of its 95 % interval (None without one) and the seeds behind it."""

    mean: float
    half: float | None
    n: int

    @property
    def interval(self) -> tuple[float, float] | None:
        """(low, high), or None with fewer than two seeds."""
        return None if self.half is None else (self.mean - self.half, self.mean + self.half)


def t_interval(values: Sequence[float]) -> Estimate:
    """Mean and 95 % Student-t interval of one sample (``half`` is None for fewer than 2 values).

    Raises: ValueError for an empty sample.
    """
    n = len(values)
    if n == 0:
        raise ValueError("t_interval of an empty sample")
    m = math.fsum(values) / n
    if n == 1:
        return Estimate(m, None, 1)
    sd = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1))
    return Estimate(m, _tcrit(n - 1) * sd / math.sqrt(n), n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of ``a_i - b_i`` over matched seeds with its 95 % t-interval (``scipy.stats.ttest_rel``'s
    interval). Raises: ValueError for samples of different lengths or empty ones."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return t_interval([x - y for x, y in zip(a, b)])


def welch_difference(a: Estimate, b: Estimate) -> Estimate:
    """Mean of ``A - B`` from two independent estimates (mean, 95 % half-width, n) with the Welch
    interval (Satterthwaite degrees of freedom): ``scipy.stats.ttest_ind(equal_var=False)``'s
    interval, recovered from summaries. ``half`` is None when either side has a single seed.
    ``n`` is the smaller of the two sample sizes."""
    d, n = a.mean - b.mean, min(a.n, b.n)
    if a.half is None or b.half is None or a.n < 2 or b.n < 2:
        return Estimate(d, None, n)
    # A 95 % half-width is t(n-1) * s / sqrt(n): back out each squared standard error.
    va, vb = (a.half / _tcrit(a.n - 1)) ** 2, (b.half / _tcrit(b.n - 1)) ** 2
    if va + vb == 0.0:
        return Estimate(d, 0.0, n)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return Estimate(d, _tcrit(df) * math.sqrt(va + vb), n)


# ---------------------------------------------------------------- tables

class TableError(ValueError):
    """A table that exists but cannot answer a claim (missing column, ambiguous rows)."""


class MissingError(LookupError):
    """The table, a measured row or its value is absent: the claim was not run."""


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):   # an empty cell, "nan" prints, text
        return math.nan


def read_rows(path: str | Path) -> tuple[list[str], list[dict]]:
    """Read a table CSV. Returns (column names, rows as dicts of strings).

    Raises: MissingError when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"no {path}")
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _is_measured(row: dict) -> bool:
    return (row.get("source") or "measured").strip() == "measured"


def measured_estimate(columns: Sequence[str], rows: list[dict], key: str, name: str, metric: str):
    """The measured value of row ``name`` in ``metric`` across seeds.

    Returns: ``(Estimate, {seed: value} | None)``: the per-seed values when the table has a
    ``seed`` column (for pairing), else None (a summary row, or a single row).
    Raises: MissingError (no such measured row, or no finite value); TableError (no such column,
    several measured rows without a ``seed`` column, a seed twice).
    """
    if key not in columns:
        raise TableError(f"no key column {key!r}")
    mine = [r for r in rows if r.get(key) == name and _is_measured(r)]
    if not mine:
        raise MissingError(f"no measured row {name!r}")
    if f"{metric}_mean" in columns or f"{metric}_ci95" in columns:
        mean_col = f"{metric}_mean" if f"{metric}_mean" in columns else metric
        missing = [c for c in (mean_col, f"{metric}_ci95", "n_seeds") if c not in columns]
        if missing:
            raise TableError(f"summary columns of {metric!r} without {', '.join(missing)}")
        if len(mine) > 1:
            raise TableError(f"{len(mine)} measured rows {name!r} in a table of means")
        r = mine[0]
        m, h, n = _num(r[mean_col]), _num(r[f"{metric}_ci95"]), _num(r["n_seeds"])
        if not math.isfinite(m):
            raise MissingError(f"no value of {metric} for {name!r}")
        n = int(n) if math.isfinite(n) and n >= 1 else 1
        return Estimate(m, h if math.isfinite(h) and n >= 2 else None, n), None
    if metric not in columns:
        raise TableError(f"no column {metric!r} (nor {metric}_mean)")
    if "seed" in columns:
        per_seed = {}
        for r in mine:
            s = r["seed"]
            if s in per_seed:
                raise TableError(f"seed {s} twice for {name!r}")
            per_seed[s] = _num(r[metric])
        # A seed that produced no number (e.g. an empty class) is left out, not counted as zero.
        per_seed = {s: v for s, v in per_seed.items() if math.isfinite(v)}
        if not per_seed:
            raise MissingError(f"no value of {metric} for {name!r}")
        return t_interval(list(per_seed.values())), per_seed
    if len(mine) > 1:
        raise TableError(f"{len(mine)} measured rows {name!r} but no 'seed' column")
    v = _num(mine[0][metric])
    if not math.isfinite(v):
        raise MissingError(f"no value of {metric} for {name!r}")
    return Estimate(v, None, 1), None


def reported_value(columns: Sequence[str], rows: list[dict], key: str, name: str, metric: str) -> float | None:
    """The paper's number for row ``name`` (a ``source`` starting with ``reported``), if the table has it."""
    for r in rows:
        if r.get(key) == name and (r.get("source") or "").startswith("reported"):
            for c in (metric, f"{metric}_mean"):
                if c in columns and math.isfinite(_num(r.get(c))):
                    return _num(r[c])
    return None


# ---------------------------------------------------------------- evaluation

@dataclass
class Result:
    """A claim evaluated on one outputs folder.

    ``status`` is ``held`` / ``not held`` / ``inconclusive`` / ``not run`` / ``error``;
    ``indicative`` is set when fewer seeds than ``claim.min_seeds`` stand behind it; ``a``/``b``
    are the resolved row names; ``diff`` the estimate of ``A - B``; ``reported`` the paper's
    (A, B) where the table has them; ``reason`` says why a claim was not run or failed.
    """

    claim: Claim
    status: str
    a: str | None = None
    b: str | None = None
    a_est: Estimate | None = None
    b_est: Estimate | None = None
    diff: Estimate | None = None
    paired: bool = False
    reported: tuple[float | None, float | None] = (None, None)
    indicative: bool = False
    reason: str = ""

    @property
    def n_seeds(self) -> int:
        """Seeds behind the difference (0 when not run)."""
        return self.diff.n if self.diff else 0

    @property
    def verdict(self) -> str:
        """The scoreboard's verdict cell, e.g. ``held``, ``held (indicative, 1 seed)``,
        ``not run (no table1/table1.csv)``."""
        if self.status in ("not run", "error"):
            return f"{self.status} ({self.reason})"
        if self.indicative:
            n = self.n_seeds
            return f"{self.status} (indicative, {n} seed{'s' if n != 1 else ''})"
        return self.status


def _satisfies(x: float, op: str, delta: float) -> bool:
    return {">=": x >= delta, ">": x > delta, "<=": x <= delta, "<": x < delta}[op]


def _judge(diff: Estimate, claim: Claim) -> tuple[str, bool]:
    """(status, indicative) of a difference estimate under the rules in the module docstring."""
    if diff.n < claim.min_seeds or diff.interval is None:
        return ("held" if _satisfies(diff.mean, claim.op, claim.delta) else "not held"), True
    lo, hi = diff.interval
    if claim.op in (">=", ">"):
        # ">=" accepts an interval touching delta from above; ">" needs it strictly above.
        held = _satisfies(lo, claim.op, claim.delta)
        against = hi < claim.delta
    else:
        held = _satisfies(hi, claim.op, claim.delta)
        against = lo > claim.delta
    if held:
        return "held", False
    return ("not held" if against else "inconclusive"), False


def _resolve(row, names: list[str]) -> str | None:
    return row.resolve(names) if isinstance(row, RowPattern) else (row if row in names else None)


def evaluate(claim: Claim, outputs_root: str | Path | None = None) -> Result:
    """Evaluate one claim on the tables under ``outputs_root`` (default: ``<project>/outputs``).

    Per-seed rows with the same seeds on both sides are paired (t-interval of the per-seed
    differences); otherwise the sides are treated as independent (Welch interval, from per-seed
    values or from a summary row's mean, ``_ci95`` and ``n_seeds``).
    Returns: a :class:`Result`; a missing table / row gives status ``not run``, a table that cannot
    answer the claim gives ``error`` (neither raises).
    """
    root = Path(outputs_root) if outputs_root is not None else outputs_dir()
    if not (root / claim.table).is_file():
        return Result(claim, "not run", reason=f"no {claim.table}")
    try:
        columns, rows = read_rows(root / claim.table)
        names = list(dict.fromkeys(r.get(claim.key) for r in rows if _is_measured(r) and r.get(claim.key)))
        a, b = _resolve(claim.a, names), _resolve(claim.b, names)
        for spec, got in ((claim.a, a), (claim.b, b)):
            if got is None:
                raise MissingError(f"no measured row {spec!r}" if isinstance(spec, str) else f"no measured row like {spec}")
        if a == b:
            raise MissingError(f"both sides are {a!r}: the table needs two different rows")
        a_est, a_seeds = measured_estimate(columns, rows, claim.key, a, claim.metric)
        b_est, b_seeds = measured_estimate(columns, rows, claim.key, b, claim.metric)
    except MissingError as e:
        return Result(claim, "not run", reason=str(e))
    except TableError as e:
        return Result(claim, "error", reason=str(e))
    paired = a_seeds is not None and b_seeds is not None and set(a_seeds) == set(b_seeds) and len(a_seeds) >= 2
    if paired:
        seeds = sorted(a_seeds)
        diff = paired_difference([a_seeds[s] for s in seeds], [b_seeds[s] for s in seeds])
    else:
        diff = welch_difference(a_est, b_est)
    status, indicative = _judge(diff, claim)
    reported = (reported_value(columns, rows, claim.key, a, claim.metric),
                reported_value(columns, rows, claim.key, b, claim.metric))
    return Result(claim, status, a, b, a_est, b_est, diff, paired, reported, indicative)


def evaluate_all(claim_list: Iterable[Claim], outputs_root: str | Path | None = None) -> list[Result]:
    """:func:`evaluate` for each claim, in order."""
    return [evaluate(c, outputs_root) for c in claim_list]


# ---------------------------------------------------------------- the scoreboard table

def _value(e: Estimate) -> str:
    return f"{e.mean:.1f}" if e.half is None else f"{e.mean:.1f} ± {e.half:.1f}"


def _measured_cell(r: Result) -> str:
    if r.diff is None:
        return ""
    d = r.diff
    ci = "" if d.half is None else f", 95 % CI [{d.mean - d.half:+.2f}, {d.mean + d.half:+.2f}]"
    return f"{_value(r.a_est)} vs {_value(r.b_est)} (Δ {d.mean:+.2f}{ci})"


def _reported_cell(r: Result) -> str:
    ra, rb = r.reported
    if ra is None and rb is None:
        return ""
    fa, fb = ("–" if v is None else f"{v:.1f}" for v in (ra, rb))
    return f"{fa} vs {fb}" + ("" if ra is None or rb is None else f" (Δ {ra - rb:+.2f})")


def scoreboard_rows(results: Iterable[Result]) -> list[dict]:
    """One dict per claim with :data:`SCOREBOARD_KEYS` (all strings): measured ``A vs B (Δ, CI)``
    (means ± 95 % half-widths with seeds), the paper's reported ``A vs B`` where the table has them,
    the seeds behind the difference (``"1 (needs 3)"``) and the verdict."""
    out = []
    for r in results:
        c = r.claim
        seeds = "" if r.diff is None else (f"{r.n_seeds}" + ("" if r.n_seeds >= c.min_seeds else f" (needs {c.min_seeds})")
                                           + (", paired" if r.paired else ""))
        text = c.text + (f" ({c.where})" if c.where else "")
        out.append({"paper": c.paper, "claim": text, "table": c.table, "rows": c.statement(r.a, r.b),
                    "metric": c.metric, "measured": _measured_cell(r), "reported": _reported_cell(r),
                    "seeds": seeds, "verdict": r.verdict})
    return out


def write_scoreboard(results: Sequence[Result], out_dir: str | Path, outputs_root: str | Path | None = None
                     ) -> tuple[Path, Path]:
    """Write ``scoreboard.csv`` and ``scoreboard.md`` into ``out_dir`` with the shared table writer.

    Returns: (csv path, markdown path).
    """
    root = Path(outputs_root) if outputs_root is not None else outputs_dir()
    try:
        shown = f"`{root.resolve().relative_to(project_root())}/`"
    except ValueError:
        shown = f"`{root}`"
    counts = {s: sum(r.status == s for r in results) for s in ("held", "not held", "inconclusive", "not run", "error")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    caption = (f"Headline claims checked on the latest tables under {shown} ({summary or 'no claims'}). "
               "Measured: means ± 95 % t half-widths over seeds, and the difference A − B with its 95 % interval. "
               "held / not held: the interval lies wholly on one side; inconclusive: it contains the margin; "
               "'indicative': fewer seeds than the claim needs, judged on the mean alone. "
               "Reported: the paper's numbers for the same rows, where the table carries them.")
    return write_table(scoreboard_rows(results), out_dir, "scoreboard", SCOREBOARD_KEYS, (), caption,
                       title="Reproduction scoreboard.")


#: Columns of a notebook's own direction-check table (:func:`direction_check`).
DIRECTION_KEYS = ("claim", "rows", "metric", "measured", "reported", "seeds", "verdict")


def direction_check(paper: str, out_dir: str | Path, table: str | Sequence[str], caption: str) -> list[Result]:
    """A paper notebook's own check of its findings: the registered claims of ``paper`` on the notebook's
    own tables (those whose file name is ``table`` or one of ``table``), evaluated on ``<out_dir>/<file>``
    (wherever the notebook wrote it, e.g. a test's temporary folder) instead of their default path under
    ``outputs/``; writes ``direction_check.csv`` / ``.md`` into ``out_dir``. The paper's experiment
    module must have been imported (it registers the claims).

    Returns: the :class:`Result` of each of those claims, in registration order.
    Raises: ValueError when no claim of ``paper`` reads such a table.
    """
    from dataclasses import replace

    out_dir = Path(out_dir)
    names = (table,) if isinstance(table, str) else tuple(table)
    mine = [c for c in claims([paper]) if Path(c.table).name in names]
    if not mine:
        raise ValueError(f"no registered claim of paper {paper!r} reads a table named {names}")
    results = [evaluate(replace(c, table=f"{out_dir.name}/{Path(c.table).name}"), out_dir.parent) for c in mine]
    rows = [{k: r[k] for k in DIRECTION_KEYS} for r in scoreboard_rows(results)]
    write_table(rows, out_dir, "direction_check", DIRECTION_KEYS, (), caption, title="Direction check.")
    return results


@dataclass
class ScoreboardParams:
    """Every knob of notebooks/scoreboard.ipynb (which only reads tables; it never trains).

    Raises: ParameterError for a ``papers`` value that is not a list of names.
    """

    outputs_root: str | None = None   # None: <project>/outputs (every paper's latest tables)
    output_dir: str | None = None     # None: <outputs_root>/scoreboard
    papers: list | None = None        # None: every paper in bevlib.experiments.PAPERS

    def __post_init__(self):
        if self.papers is not None:
            if isinstance(self.papers, str):
                self.papers = [self.papers]
            if not isinstance(self.papers, (list, tuple)) or not all(isinstance(p, str) for p in self.papers):
                raise ParameterError(f"parameter 'papers' must be a list of paper names, got {self.papers!r}")
            self.papers = list(self.papers)

    @property
    def root(self) -> Path:
        """The outputs folder whose tables are read."""
        return Path(self.outputs_root) if self.outputs_root else outputs_dir()

    @property
    def out(self) -> Path:
        """Where scoreboard.csv / scoreboard.md go."""
        return Path(self.output_dir) if self.output_dir else self.root / "scoreboard"
