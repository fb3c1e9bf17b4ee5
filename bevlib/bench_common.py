"""What every ``python -m bevlib.bench`` case shares: the JSON schema version, medians in ms, the load average,
the ``environment`` block and the paired-speedup ``summary`` block of a result."""
from __future__ import annotations

import contextlib
import os
import platform
import statistics

#: Version of the benchmark JSON layout (every case writes it).
SCHEMA_VERSION = 1
#: Keys :func:`environment` always writes; callers may not pass them again.
_ENVIRONMENT_KEYS = ("python", "platform", "cpu_count", "load_average_1min")


def _median_ms(samples: list[float]) -> float:
    return round(1e3 * statistics.median(samples), 3)


def _load():
    """The 1-minute load average (None where the platform has none), recorded beside timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def environment(load_start, **extra) -> dict:
    """The ``environment`` block of a benchmark result, built when the timing has ended.

    Args:
        load_start: :func:`_load` taken before the timed runs (float or None). Other processes' load inflates
            wall-clock medians (minima less so), so the load is recorded at both ends of the timing.
        **extra: case-specific entries (library versions, thread settings, kernel status), written first.
    Returns:
        ``{**extra, "python": str, "platform": str, "cpu_count": int | None,
        "load_average_1min": {"start": load_start, "end": float | None}}``.
    Raises:
        ValueError: ``extra`` names one of the keys written here (python, platform, cpu_count,
            load_average_1min).
    """
    clash = sorted(set(extra) & set(_ENVIRONMENT_KEYS))
    if clash:
        raise ValueError(f"environment(): extra may not set {clash}; they are written by environment() itself")
    return {**extra, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_average_1min": {"start": load_start, "end": _load()}}


def paired_summary(rows: list[dict], check: str) -> dict:
    """The ``summary`` block of a benchmark judged on paired speedups and one correctness flag per row.

    Args:
        rows: result rows, each with "speedup_paired" (float, reference/ours median ratio), "meets_target"
            (bool) and the bool ``check``.
        check: the row key of the correctness flag (e.g. "equal", "outputs_identical").
    Returns:
        ``{"min_speedup_paired": float, f"all_{check}": bool, "meets_target": bool}``.
    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks "speedup_paired", "meets_target" or ``check``.
    """
    if not rows:
        raise ValueError("paired_summary(): rows is empty; a benchmark needs at least one timed row")
    return {"min_speedup_paired": min(r["speedup_paired"] for r in rows),
            f"all_{check}": all(r[check] for r in rows),
            "meets_target": all(r["meets_target"] for r in rows)}


def paired_summary_line(result: dict, check: str, label: str, heading: str = "targets", versus: str = "") -> str:
    """The last line of a text table for a result with a :func:`paired_summary` block and a "speedup_min" target.

    Args:
        result: a benchmark result; check: the row flag summarised (its summary key is ``f"all_{check}"``);
        label: how the table names that flag; heading: the line's first word; versus: appended to
            "x faster" (e.g. " than cumsum").
    Returns:
        e.g. ``"targets: >= 3.0 x faster, identical -> min (paired) 4.10, identical True (met)"``.
    Raises:
        KeyError: ``result`` lacks the targets or summary entries named above.
    """
    s = result["summary"]
    return (f"{heading}: >= {result['targets']['speedup_min']} x faster{versus}, {label} -> min (paired) "
            f"{s['min_speedup_paired']:.2f}, {label} {s[f'all_{check}']} "
            f"({'met' if s['meets_target'] else 'NOT met'})")


def bench_result(benchmark: str, config: dict, environment: dict, results: list[dict], *,
                 reported: dict | None = None, targets: dict | None = None, summary: dict | None = None) -> dict:
    """A benchmark result in the layout :data:`SCHEMA_VERSION` names, keys in the order the JSON files show.

    Args:
        benchmark: the case name ("render", "splat", "range", "lovasz", "rangevit", "depth").
        config: what was timed and how; environment: :func:`environment`'s block; results: one dict a row.
        reported: a published figure compared against (optional); targets: the thresholds judged
            (optional); summary: the verdict over ``results`` (optional). Omitted blocks are left out.
    Returns:
        ``{"benchmark", "schema_version", "config", "environment", ["reported"], ["targets"], "results",
        ["summary"]}``.
    Raises:
        ValueError: ``benchmark`` is empty or ``results`` is not a list.
    """
    if not benchmark:
        raise ValueError("bench_result(): benchmark must be a non-empty case name")
    if not isinstance(results, list):
        raise ValueError(f"bench_result(): results must be a list of row dicts, got {type(results).__name__}")
    out = {"benchmark": benchmark, "schema_version": SCHEMA_VERSION, "config": config, "environment": environment}
    for key, block in (("reported", reported), ("targets", targets)):
        if block is not None:
            out[key] = block
    out["results"] = results
    if summary is not None:
        out["summary"] = summary
    return out


def round_robin(run, names, backward: bool, warmup: int, repeats: int) -> tuple[dict, dict]:
    """Time ``run(name, backward)`` for every method side by side: ``warmup`` untimed calls each, one
    call each whose result is kept, then ``repeats`` rounds over all methods in a rotating order (so load
    from other processes hits each method alike).

    Args:
        run: callable ``(name, backward) -> result``.
        names: method names, in order.
    Returns: ``(outs, samples)``: ``{name: result of the kept call}`` and ``{name: [seconds per round]}``.
    """
    import time

    names = list(names)
    outs = {}
    for name in names:
        for _ in range(warmup):
            run(name, backward)
        outs[name] = run(name, backward)
    samples = {name: [] for name in names}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t1 = time.perf_counter()
            run(name, backward)
            samples[name].append(time.perf_counter() - t1)
    return outs, samples


@contextlib.contextmanager
def torch_timing(threads: int):
    """The process setting every torch benchmark times under, undone on exit.

    Records the load average first, lets glibc reuse large blocks as training does
    (:func:`bevlib.runtime.reuse_large_allocations`, kept: it is idempotent and process-wide) and runs the
    body on ``threads`` intra-op threads, restoring the previous ``torch.get_num_threads()`` afterwards,
    on error too.

    Args:
        threads: ``torch.set_num_threads`` for the body (int >= 1).
    Yields:
        (load_start, reused): :func:`_load` before the timing (float or None), and whether the
        allocation setting took (bool), both for the result's environment and config.
    Raises:
        ValueError: ``threads`` < 1.
    """
    import torch

    from .runtime import reuse_large_allocations

    if int(threads) < 1:
        raise ValueError(f"torch_timing(): threads must be >= 1, got {threads}")
    load_start = _load()
    reused = reuse_large_allocations()
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield load_start, reused
    finally:
        torch.set_num_threads(old)
