"""The renderer benchmark (``python -m bevlib.bench render --quick``): schema and correctness.

Timing targets (analytic <= 1.5 x floor, >= 10 x faster than PyTorch3D) are reported, never
asserted: wall-clock ratios are noisy on shared CI machines."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "render.json"
    r = subprocess.run([sys.executable, "-m", "bevlib.bench", "render", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


@pytest.mark.slow   # runs the quick benchmark in a subprocess (~5 s alone, >10 s on a busy 2-core box)
def test_quick_bench_schema(quick_result):
    res, stdout = quick_result
    assert res["benchmark"] == "render" and res["schema_version"] == 1
    cfg = res["config"]
    assert cfg["quick"] is True and cfg["cameras"] == 6 and cfg["batch"] == 1 and cfg["threads"] == 2
    assert res["targets"] == {"analytic_over_floor_max": 1.5, "pytorch3d_over_analytic_min": 10.0}
    p3d = res["environment"]["pytorch3d"]
    assert p3d.startswith("available") or p3d.startswith("unavailable")
    cases = {(r["channels"], tuple(r["bev_hw"]), r["pass"]) for r in res["results"]}
    assert cases == {(c, (s, s), p) for c in (4, 13) for s in (150, 200) for p in ("forward", "forward+backward")}
    for r in res["results"]:
        assert r["floor_ms"] > 0 and r["analytic_ms"] > 0
        assert r["analytic_over_floor"] == pytest.approx(r["analytic_ms"] / r["floor_ms"], rel=0.01)
        assert r["analytic_over_floor_paired"] > 0 and isinstance(r["meets_floor_target"], bool)
        if p3d.startswith("available"):
            assert r["pytorch3d_ms"] > 0 and r["pytorch3d_over_analytic"] > 0
        else:
            assert r["pytorch3d_ms"] == r["pytorch3d_over_analytic"] == "unavailable"
        if r["pass"] == "forward":
            assert r["analytic_cold_ms"] > 0
    assert res["summary"]["max_analytic_over_floor"] == max(r["analytic_over_floor"] for r in res["results"])
    assert "an/floor" in stdout and "targets:" in stdout


@pytest.mark.slow   # runs the quick benchmark in a subprocess (~5 s alone, >10 s on a busy 2-core box)
def test_analytic_output_equals_the_floor_exactly(quick_result):
    res, _ = quick_result
    # The public API is the same bilinear gather on the cached grid: bitwise the same output where
    # torch's grid_sample fuses its multiply-adds as the native kernels do (or where the kernels are
    # off and it is grid_sample itself); the CPU backward is the same gradient up to rounding.
    fused = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    if fused or not res["environment"]["native_kernels"].startswith("loaded"):
        assert all(r["analytic_equals_floor"] for r in res["results"])
        assert res["summary"]["all_outputs_equal"] is True
    assert all(r["analytic_grad_max_abs_diff_floor"] < 1e-4 for r in res["results"] if r["pass"] == "forward+backward")


def test_bench_rejects_bad_arguments():
    from bevlib.bench import bench_render

    with pytest.raises(ValueError, match="repeats"):
        bench_render(repeats=0)
    with pytest.raises(ValueError, match="pass"):
        bench_render(passes=("backward",))


def test_batched_render_equals_both_floors():
    # B > 1 takes render_bev's other path (the map copied per camera, not a stride-0 view).
    from bevlib.bench import bench_render

    res = bench_render(repeats=1, warmup=0, batch=2, image_hw=(36, 64), channels=(3,), bev_sizes=(40,),
                       pytorch3d=False)
    assert res["config"]["batch"] == 2 and res["environment"]["pytorch3d"].startswith("unavailable")
    for r in res["results"]:
        assert r["analytic_equals_floor"] and r["analytic_equals_flat_floor"]
        if r["pass"] == "forward+backward":
            assert r["analytic_grad_max_abs_diff_floor"] < 1e-4 and r["analytic_grad_max_abs_diff_flat_floor"] < 1e-4


def test_range_bench_is_identical_to_the_reference_and_writes_json(tmp_path):
    # The range projection case (python -m bevlib.bench range): in-process, a synthetic 34,688-point
    # sweep, few repeats. Speed is reported, not asserted (noisy on shared machines).
    from bevlib.bench import bench_range, format_range_table, main

    res = bench_range(repeats=2, warmup=0, synthetic=True)
    assert res["benchmark"] == "range" and res["config"]["points"] == 34688
    assert [r["row"] for r in res["results"]] == ["ring", "elevation"]
    for r in res["results"]:
        assert r["outputs_identical"] is True and r["vectorised_ms"] > 0 and r["reference_ms"] > 0
        assert r["speedup"] == pytest.approx(r["reference_ms"] / r["vectorised_ms"], rel=0.02)
    assert res["summary"]["all_outputs_identical"] is True and "identical" in format_range_table(res)
    with pytest.raises(ValueError, match="repeats"):
        bench_range(repeats=0)
    out = tmp_path / "range.json"
    assert main(["range", "--synthetic", "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["outputs_identical"] is True
