"""``python -m bevlib.bench memory`` (busch2026's benchmark, loaded by name from :mod:`bevlib.bench`): peak resident memory of busch2026 training steps on CPU, and which
modules' activations make it (issue 15, item 4).

Setting: the busch2026 Table I task (:mod:`bevlib.experiments.busch2026`) built from a parameter preset
(default ``params/table1/paper.yaml``: batch 6, 512 x 288 images, ResNet-50, 150 x 150 queries, 6 layers,
D = 256) on the embedded world (4 scenes x 4 keyframes) with random weights and synthetic pseudo-labels:
neither the weights nor the labels change the memory of a step. Each batch size runs in its own child
Python process, so its ``ru_maxrss`` is its own and an out-of-memory kill ends the child, not the bench
(reported as "killed (signal 9) at batch B"); the parent also kills a child whose RSS passes
``max_rss_gib``, to spare a shared machine. A child does what :func:`bevlib.train.train` does per step
(zero_grad, the task's loss, backward, gradient clipping at 35, AdamW step) ``steps`` times, without
checkpoints or evaluation.

During the first step it records
* the bytes autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``), counted once per
  storage (views share one) and charged to the innermost module running when the tensor was saved
  (forward pre/post hooks keep the stack); tensors that are parameters' storage are counted apart, as they
  cost nothing extra. Reported per module, per module pattern (layer indices as ``*``: the 6 encoder
  layers as one row) and per top-level child, with the largest saved tensors' shapes;
* the peak of live CPU tensor bytes (the profiler's allocation events summed in time order, relative to
  the step's start), the phase (forward / backward / optimizer) and the operator running at that moment.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...bench_common import bench_result, environment
from ...paths import project_root

GIB = float(2 ** 30)
DEFAULT_PRESET = "params/table1/paper.yaml"
#: The embedded world of the measurement (enough train keyframes for batch 6, small to load).
PAPER_WORLD = dict(world_scenes=4, world_keyframes=4)
#: --quick: a tiny model on a tiny world (tests; seconds).
QUICK = dict(image_wh=(128, 72), bev_hw=(60, 30), query_hw=(20, 10), embed_dim=16, num_layers=1, num_heads=4,
             ffn_dim=32, backbone="tiny", world_scenes=3, world_keyframes=3, world_image_wh=(320, 180))
#: Preset keys dropped: real data and pretrained weights (the memory of a step does not depend on them).
_DROPPED = ("dataroot", "version", "mask2former_weights", "backbone_weights", "labeler")
#: Table1Params fields written to the config (``batch_size``: the preset's batch, estimated when not measured).
_SHOWN = ("image_wh", "backbone", "query_hw", "bev_hw", "embed_dim", "num_layers", "num_heads", "ffn_dim",
          "use_history", "batch_size")
_OUTSIDE = "(outside the model: loss)"
#: Training modes of the busch2026 task that the bench can measure.
MODES = ("supervised", "pretrain")
_ROOT = "(model top level)"


def _vmrss_gib(pid="self") -> float | None:
    """Current RSS (VmRSS) of a process in GiB; None where /proc does not tell (gone, not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def _rss_gib() -> dict:
    """This process's current RSS and its peak (ru_maxrss, KiB on Linux), GiB."""
    cur = _vmrss_gib()
    return {"current": None if cur is None else round(cur, 3),
            "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)}


def preset_params(preset: str = DEFAULT_PRESET, quick: bool = False, dataroot: str | None = None):
    """The :class:`~bevlib.experiments.busch2026.params.Table1Params` measured.

    Args:
        preset: a YAML parameter file (relative paths are taken from the project root); ignored with ``quick``.
        quick: the tiny :data:`QUICK` model and world instead.
        dataroot: a nuScenes-layout folder to read instead of the embedded world (e.g. a test's tiny world).
    Returns: Table1Params with the preset's real-data and weight entries (:data:`_DROPPED`) removed.
    Raises: OSError (no preset file), ParameterError (an invalid value).
    """
    import yaml

    from .params import Table1Params

    if quick:
        v = dict(QUICK)
    else:
        path = Path(preset) if Path(preset).is_absolute() else project_root() / preset
        v = {k: x for k, x in yaml.safe_load(path.read_text()).items() if k not in _DROPPED}
        v.update(PAPER_WORLD)
    v.update(progress=False, dataroot=dataroot)
    return Table1Params(**v)


class SavedTensorTracker:
    """Context manager: bytes autograd saves for backward inside it, per innermost running module of ``model``.

    Attributes (after use): ``by_module`` {module name: bytes} (distinct storages, each charged once to the
    module running at its first save; ``"(model top level)"`` for the root's own code, ``"(outside the
    model: loss)"`` for code outside it); ``parameter_bytes`` (saved parameter storages: no extra memory);
    ``largest`` [(bytes, module, shape, dtype)] of the biggest saved storages, largest first.
    Holds no reference to any tensor, so it does not change what it measures.
    """

    def __init__(self, model, keep_largest: int = 8):
        import torch

        self.model, self.keep = model, keep_largest
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.stack: list[str] = []
        self.seen: set = set()
        self.by_module: dict[str, int] = {}
        self.parameter_bytes = 0
        self.largest: list[tuple] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._handles: list = []

    def _pack(self, t):
        try:
            st = t.untyped_storage()
            ptr, nbytes = st.data_ptr(), st.nbytes()
        except (RuntimeError, NotImplementedError):  # no plain storage (sparse, wrapper subclasses)
            ptr, nbytes = id(t), t.numel() * t.element_size()
        if nbytes == 0 or (ptr, nbytes) in self.seen:
            return t
        self.seen.add((ptr, nbytes))
        if ptr in self.params:
            self.parameter_bytes += nbytes
            return t
        name = self.stack[-1] if self.stack else _OUTSIDE
        self.by_module[name] = self.by_module.get(name, 0) + nbytes
        if len(self.largest) < self.keep or nbytes > self.largest[-1][0]:
            self.largest = sorted(self.largest + [(nbytes, name, tuple(t.shape), str(t.dtype))],
                                  key=lambda r: -r[0])[:self.keep]
        return t

    def __enter__(self):
        def push(name):
            def hook(module, args):
                self.stack.append(name)
            return hook

        def pop(module, args, output):  # returns None: a forward hook's return value would replace the output
            self.stack.pop()

        for name, m in self.model.named_modules():
            self._handles.append(m.register_forward_pre_hook(push(name or _ROOT)))
            self._handles.append(m.register_forward_hook(pop, always_call=True))
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


def _rows(by_module: dict, key) -> list[dict]:
    """Bytes summed by ``key(module name)``, largest first: [{"name", "bytes", "gib", "share" of the total}]."""
    total = sum(by_module.values()) or 1
    acc: dict[str, int] = {}
    for name, b in by_module.items():
        acc[key(name)] = acc.get(key(name), 0) + b
    return [{"name": n, "bytes": b, "gib": round(b / GIB, 4), "share": round(b / total, 4)}
            for n, b in sorted(acc.items(), key=lambda kv: -kv[1])]


#: Groupings of the saved bytes: per module, per pattern (layer indices as ``*``), per top-level child.
_GROUPS = {"top_level": lambda n: n if n.startswith("(") else n.split(".")[0],
           "patterns": lambda n: re.sub(r"\.\d+(?=\.|$)", ".*", n), "modules": lambda n: n}


def _live_peak(prof) -> dict | None:
    """Peak live CPU tensor bytes of a profiled step (allocations minus frees in time order, from its start),
    the phase and the outermost / innermost operator running then, and the live bytes when forward ended."""
    try:
        events = list(prof.profiler.kineto_results.events())
    except AttributeError:  # profiler internals moved: report no live peak rather than fail
        return None
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    if not mem:
        return None
    ops = [(e.start_ns(), e.end_ns(), e.name()) for e in events if e.name() != "[memory]"]
    phases = {n.split("::")[1]: (s, f) for s, f, n in ops if n.startswith("bench_memory::")}
    live, peak, t_peak, after_fwd = 0, 0, mem[0][0], None
    fwd_end = phases.get("forward", (0, 0))[1]
    for t, b in mem:
        if after_fwd is None and t > fwd_end:
            after_fwd = live
        live += b
        if live > peak:
            peak, t_peak = live, t
    at = sorted(((f - s, n) for s, f, n in ops if s <= t_peak <= f and not n.startswith("bench_memory::")),
                reverse=True)
    after_fwd = live if after_fwd is None else after_fwd
    return {"peak_gib": round(peak / GIB, 3), "after_forward_gib": round(after_fwd / GIB, 3),
            "peak_bytes": peak, "after_forward_bytes": after_fwd,
            "phase": next((p for p, (s, f) in phases.items() if s <= t_peak <= f), None),
            "op_outer": at[0][1] if at else None, "op_inner": at[-1][1] if at else None}


def measure_training(p, batch: int, steps: int, threads: int = 2, report=None, mode: str = "supervised") -> dict:
    """``steps`` training steps of the busch2026 task of ``p`` at ``batch``, in this process.

    Args:
        p: Table1Params (:func:`preset_params`); batch: keyframes per step (>= 1); steps: >= 1.
        threads: ``torch.set_num_threads``.
        report: called with the partial result after every phase (a killed child leaves what it had).
        mode: :data:`MODES`: "supervised" (BEV cross-entropy: the baseline and fine-tuning) or "pretrain"
            (busch2026's pretraining: Eq. 1 on the predictions rendered into the 6 cameras, plus Alg. 1's
            temporal term).
    Returns: {"batch", "status": "ok", "phase", "rss_gib": {phase: {"current", "peak"}}, "peak_rss_gib",
        "step_s" [s], "params", "param_gib", "grad_gib", "optimizer_state_gib", "saved" (first step: "total_gib",
        "parameters_saved_gib", "top_level" / "patterns" / "modules" rows, "largest_tensors"), "live" (or None)}.
    Raises: ValueError for batch or steps < 1.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from . import runs
    from ...runtime import reuse_large_allocations
    from ...train import TrainConfig
    from ...train.optim import build_optimizer

    if batch < 1 or steps < 1:
        raise ValueError(f"need batch >= 1 and steps >= 1, got {batch}, {steps}")
    report = report or (lambda r: None)
    torch.set_num_threads(threads)
    reuse_large_allocations()  # as train() does: freed blocks stay in the heap, as in a long run
    out = {"batch": batch, "status": "running", "phase": "start", "rss_gib": {"start": _rss_gib()}, "step_s": []}

    def mark(phase):
        out["phase"] = phase
        out["rss_gib"][phase] = _rss_gib()
        out["peak_rss_gib"] = out["rss_gib"][phase]["peak"]
        report(out)

    exp = runs.prepare(p)
    task = runs.make_task(exp, exp.train_tokens, **({"mode": "pretrain", "temporal": True} if mode == "pretrain" else {}))
    ds = task.train_dataset()
    mark("data")
    torch.manual_seed(0)
    model = task.build_model()
    cfg = TrainConfig(batch_size=batch, lr=p.lr)
    opt = build_optimizer(task.param_groups(model), cfg)
    n = sum(q.numel() for q in model.parameters())
    pbytes = sum(q.numel() * q.element_size() for q in model.parameters())
    out.update(params=n, param_gib=round(pbytes / GIB, 4), param_bytes=pbytes)
    model.train()
    mark("model")
    for step in range(steps):
        b = task.collate([ds[(step * batch + i) % len(ds)] for i in range(batch)])
        first = step == 0
        t0 = time.perf_counter()
        tracker = SavedTensorTracker(model)
        prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True) if first else None
        with prof or contextlib.nullcontext():
            opt.zero_grad(set_to_none=True)
            with record_function("bench_memory::forward"):
                with tracker if first else contextlib.nullcontext():
                    loss = sum(task.loss(model, b).values())
            with record_function("bench_memory::backward"):
                loss.backward()
            with record_function("bench_memory::optimizer"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
        out["step_s"].append(round(time.perf_counter() - t0, 2))
        if first:
            t = sum(tracker.by_module.values())
            out["saved"] = {"total_gib": round(t / GIB, 4), "total_bytes": t,
                            "parameters_saved_gib": round(tracker.parameter_bytes / GIB, 4),
                            **{k: _rows(tracker.by_module, g) for k, g in _GROUPS.items()},
                            "largest_tensors": [{"module": m, "shape": list(s), "dtype": d, "gib": round(nb / GIB, 4)}
                                                for nb, m, s, d in tracker.largest]}
            out["live"] = _live_peak(prof)
            del prof, tracker
        del loss, b
        mark(f"step {step + 1}")
    grads = sum(q.grad.numel() * q.grad.element_size() for q in model.parameters() if q.grad is not None)
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    out.update(grad_gib=round(grads / GIB, 4), optimizer_state_gib=round(state / GIB, 4), grad_bytes=grads,
               optimizer_state_bytes=state, status="ok")
    report(out)
    return out


def _child_main(spec_json: str) -> None:
    """Child entry point: measure one batch size, rewriting the row at ``spec["path"]`` after every phase."""
    from .params import Table1Params

    spec = json.loads(spec_json)
    path = spec["path"]

    def report(r):
        Path(path + ".tmp").write_text(json.dumps(r))
        os.replace(path + ".tmp", path)
    measure_training(Table1Params(**spec["params"]), spec["batch"], spec["steps"], spec["threads"], report,
                     spec.get("mode", "supervised"))


def run_child(p, batch: int, steps: int, threads: int = 2, max_rss_gib: float | None = 14.0,
              mode: str = "supervised") -> dict:
    """:func:`measure_training` in a child Python process; a kill (the kernel's OOM killer, or ours above
    ``max_rss_gib`` GiB, None: no limit) or an error is reported in the returned row instead of raised.

    A fresh interpreter (not multiprocessing) so that nothing of the caller's main module is re-run there.
    Returns: the child's row, with "status" "ok", "killed" (and "message": "killed (signal 9) at batch B ...",
        the last "phase" reached) or "error" (exit code, stderr tail); "watch_max_rss_gib": the child's
        largest RSS the parent saw (sampled every 0.1 s).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project_root())] +
                                                      [x for x in [os.environ.get("PYTHONPATH")] if x]))
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as d:
        path = os.path.join(d, "row.json")
        spec = json.dumps({"params": dataclasses.asdict(p), "batch": batch, "steps": steps, "threads": threads,
                           "path": path, "mode": mode})
        with open(os.path.join(d, "stderr"), "w+") as err:
            code = f"import sys; from {__name__} import _child_main; _child_main(sys.argv[1])"
            proc = subprocess.Popen([sys.executable, "-c", code, spec], env=env, stdout=subprocess.DEVNULL, stderr=err)
            seen, ours = 0.0, False
            try:
                while proc.poll() is None:
                    seen = max(seen, _vmrss_gib(proc.pid) or 0.0)
                    if max_rss_gib is not None and seen > max_rss_gib and not ours:
                        ours = True
                        proc.send_signal(signal.SIGKILL)
                    try:
                        proc.wait(0.1)
                    except subprocess.TimeoutExpired:
                        pass
            finally:  # an interrupted bench leaves no child behind
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            tail = err.read()[-2000:]
        row = json.loads(Path(path).read_text()) if os.path.exists(path) else {"batch": batch, "phase": "start"}
    row["watch_max_rss_gib"] = round(seen, 3)
    code = proc.returncode
    if code == 0 and row.get("status") == "ok":
        return row
    if code < 0:
        why = f" by the bench (RSS above max_rss_gib={max_rss_gib})" if ours else " (out of memory?)"
        row.update(status="killed", message=f"killed (signal {-code}) at batch {batch}{why}, "
                                            f"after phase {row.get('phase')!r}")
    else:
        row.update(status="error", message=f"child exited with code {code} after phase {row.get('phase')!r}: "
                                           f"{tail.strip().splitlines()[-1] if tail.strip() else ''}", stderr=tail)
    return row


def _estimate(rows: list[dict], target: int) -> dict | None:
    """Peak RSS and saved bytes at batch ``target``, linear in batch: through two measured batches, or from one
    as (RSS before the steps + grads + optimizer state) fixed plus batch x the rest; None when ``target`` was
    measured or nothing was."""
    ok = sorted((r for r in rows if "saved" in r), key=lambda r: r["batch"])  # killed after step 1 counts
    if not ok or any(r["batch"] == target for r in ok):
        return None
    lo, hi = ok[0], ok[-1]
    if hi["batch"] > lo["batch"]:
        slope = (hi["peak_rss_gib"] - lo["peak_rss_gib"]) / (hi["batch"] - lo["batch"])
        s_slope = (hi["saved"]["total_gib"] - lo["saved"]["total_gib"]) / (hi["batch"] - lo["batch"])
        how = f"linear through batches {lo['batch']} and {hi['batch']}"
    else:
        fixed = lo["rss_gib"]["model"]["current"] + 3 * lo["param_gib"]  # + grads + AdamW's two moments
        slope = (lo["peak_rss_gib"] - fixed) / lo["batch"]
        s_slope = lo["saved"]["total_gib"] / lo["batch"]
        how = (f"estimate from batch {lo['batch']}: RSS before the steps + grads + AdamW state fixed, "
               "the rest of the peak and the saved activations proportional to batch")
    return {"batch": target, "peak_rss_gib": round(lo["peak_rss_gib"] + slope * (target - lo["batch"]), 1),
            "saved_gib": round(lo["saved"]["total_gib"] + s_slope * (target - lo["batch"]), 1), "method": how}


def bench_memory(preset: str = DEFAULT_PRESET, batches=(1,), steps: int = 2, threads: int = 2, quick: bool = False,
                 dataroot: str | None = None, max_rss_gib: float | None = 14.0, mode: str = "supervised") -> dict:
    """Peak RSS and saved-activation attribution of ``steps`` busch2026 training steps per batch size (module doc).

    Args:
        preset: parameter YAML (ignored with ``quick``); batches: batch sizes, each in its own child, ascending;
            after a kill, larger ones are skipped. steps: training steps per child (>= 1).
        threads: torch threads in the child; quick: the tiny :data:`QUICK` setting; dataroot: data instead of
            the embedded world; max_rss_gib: kill a child above this RSS (GiB; None: only the kernel's limit).
        mode: the task's training mode, one of :data:`MODES` (see :func:`measure_training`).
    Returns: the JSON-ready result: ``config``, ``environment``, ``results`` (one row per batch, see
        :func:`run_child`), ``summary`` (``estimate`` at the preset's batch when it was not measured, or None).
    Raises: ValueError for an empty batch list, a batch or steps < 1, an unknown mode; OSError /
        ParameterError for the preset.
    """
    import torch

    from ...bench_common import _load

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1 or steps < 1 or threads < 1:
        raise ValueError(f"need batches >= 1, steps >= 1, threads >= 1; got {batches}, {steps}, {threads}")
    p = preset_params(preset, quick, dataroot)
    load_start = _load()
    rows = []
    for b in batches:
        if rows and rows[-1]["status"] != "ok":
            rows.append({"batch": b, "status": "skipped", "message": f"skipped after batch {rows[-1]['batch']} "
                                                                      f"{rows[-1]['status']}"})
            continue
        rows.append(run_child(p, b, steps, threads, max_rss_gib, mode))
    config = {"preset": "quick" if quick else preset, "dataroot": dataroot or "embedded world",
              **{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items() if k in _SHOWN},
              "batches": batches, "steps": steps, "threads": threads, "quick": quick, "max_rss_gib": max_rss_gib,
              "weights": "random", "labeler": "synthetic", "mode": mode,
              "step": "zero_grad, task loss, backward, clip_grad_norm, AdamW step (as bevlib.train.train)",
              "saved": "bytes saved for backward in step 1, distinct storages, charged to the innermost module "
                       "running; parameters apart",
              "live": "peak of live CPU tensor bytes in step 1 from the profiler's allocation events"}
    return bench_result("memory", config=config,
                        environment=environment(load_start, torch=torch.__version__),
                        results=rows, summary={"estimate": _estimate(rows, p.batch_size)})


def format_memory_table(result: dict) -> str:
    """The memory benchmark as text: one line per batch, then the first measured batch's attribution."""
    c = result["config"]
    lines = [f"memory: busch2026 training at {c['preset']} ({c['image_wh'][0]}x{c['image_wh'][1]}, {c['backbone']}, "
             f"{c['query_hw'][0]}x{c['query_hw'][1]} queries, {c['num_layers']} layers, D {c['embed_dim']}), "
             f"CPU, {c['threads']} threads, {c['steps']} steps; GiB",
             f"{'batch':>5} {'status':>8} {'peak RSS':>9} {'before':>7} {'saved':>7} {'live peak':>9}  s/step"]
    lines.append("-" * 60)
    for r in result["results"]:
        if "saved" in r:
            live = r.get("live") or {}
            lines.append(f"{r['batch']:>5} {r['status']:>8} {r['peak_rss_gib']:>9.2f} "
                         f"{r['rss_gib']['model']['current']:>7.2f} {r['saved']['total_gib']:>7.2f} "
                         f"{live.get('peak_gib', float('nan')):>9.2f}  {', '.join(str(s) for s in r['step_s'])}")
        if r["status"] != "ok":
            lines.append(f"{r['batch']:>5} {r['status']:>8}  {r.get('message', '')}")
    # a child killed after its first step still has that step's attribution
    done = [r for r in result["results"] if "saved" in r]
    if done:
        r = done[0]
        live = r.get("live") or {}
        lines.append(f"parameters {r['params'] / 1e6:.1f} M: {r['param_gib']:.3f} GiB"
                     + (f", grads {r['grad_gib']:.3f}, AdamW state {r['optimizer_state_gib']:.3f}"
                        if "grad_gib" in r else ""))
        if live:
            before = r["rss_gib"]["model"]["current"]
            lines.append(f"live tensor peak (batch {r['batch']}, step 1): {live['peak_gib']:.2f} GiB in "
                         f"{live['phase']}, during {live['op_outer']} / {live['op_inner']}; after forward "
                         f"{live['after_forward_gib']:.2f}")
            lines.append(f"peak RSS {r['peak_rss_gib']:.2f} = RSS before the steps {before:.2f} + live tensor peak "
                         f"{live['peak_gib']:.2f} + {r['peak_rss_gib'] - before - live['peak_gib']:.2f} not in live "
                         "tensors (allocator, library scratch)")
        for title, key in (("top-level module", "top_level"), ("module pattern", "patterns"), ("module", "modules")):
            lines.append(f"saved for backward (batch {r['batch']}, step 1, {r['saved']['total_gib']:.3f} GiB; "
                         f"parameters apart {r['saved']['parameters_saved_gib']:.3f}) by {title}:")
            lines += [f"  {x['name']:<58} {x['gib']:>7.3f} {100 * x['share']:>5.1f} %" for x in r["saved"][key][:8]]
        lines.append("largest saved tensors:")
        lines += [f"  {x['module']:<34} {str(tuple(x['shape'])):<28} {x['dtype']:<14} {x['gib']:>7.3f}"
                  for x in r["saved"]["largest_tensors"]]
    est = result["summary"]["estimate"]
    if est:
        lines.append(f"ESTIMATE batch {est['batch']}: peak RSS ~{est['peak_rss_gib']} GiB, saved ~{est['saved_gib']} "
                     f"GiB ({est['method']})")
    return "\n".join(lines)


def add_memory_parser(sub) -> None:
    """Register the ``memory`` sub-command on :mod:`bevlib.bench`'s sub-parsers."""
    sp = sub.add_parser("memory", help="peak RSS of busch2026 training steps on CPU, and which modules dominate")
    sp.add_argument("--batch", type=int, nargs="+", default=[1], help="batch size(s), one process each (default 1)")
    sp.add_argument("--steps", type=int, default=2, help="training steps per batch size (default 2)")
    sp.add_argument("--preset", default=DEFAULT_PRESET, help=f"parameter YAML (default {DEFAULT_PRESET})")
    sp.add_argument("--dataroot", default=None, help="data folder instead of the embedded world")
    sp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    sp.add_argument("--max-rss-gib", type=float, default=14.0, help="kill a child above this RSS (default 14; 0: off)")
    sp.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/memory.json)")
    sp.add_argument("--mode", choices=MODES, default="supervised",
                    help="supervised (BEV CE) or pretrain (Eq. 1 through the renderer + Alg. 1); default supervised")
    sp.add_argument("--quick", action="store_true", help="a tiny model and world, for tests")


def run_memory(args, emit) -> int:
    """Run the ``memory`` sub-command from parsed ``args``; ``emit`` is :func:`bevlib.bench._emit`."""
    result = bench_memory(preset=args.preset, batches=args.batch, steps=args.steps, threads=args.threads,
                          quick=args.quick, dataroot=args.dataroot, max_rss_gib=args.max_rss_gib or None,
                          mode=args.mode)
    return emit(result, args.out, "memory", format_memory_table)
