"""The renderer benchmark (``python -m bevlib.bench render --quick``): schema and correctness.

Timing targets (analytic <= 1.5 x floor, >= 10 x faster than PyTorch3D, cold <= 2 x warm) are reported, never
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
    assert res["targets"] == {"analytic_over_floor_max": 1.5, "cold_over_warm_max": 2.0,
                              "pytorch3d_over_analytic_min": 10.0}
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
        assert r["cold_ms"] > 0 and r["cold_over_warm_paired"] > 0 and isinstance(r["meets_cold_target"], bool)
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
        assert all(r["cold_equals_floor"] for r in res["results"])      # a new rig's render too
    assert all(r["analytic_grad_max_abs_diff_floor"] < 1e-4 and r["cold_grad_max_abs_diff_floor"] < 1e-4
               for r in res["results"] if r["pass"] == "forward+backward")


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
        assert r["analytic_equals_floor"] and r["analytic_equals_flat_floor"] and r["cold_equals_floor"]
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


def test_lovasz_bench_matches_the_reference_and_writes_json(tmp_path):
    # python -m bevlib.bench lovasz at a tiny size: the vectorised loss and Berman et al.'s
    # per-class loop agree (value and gradient) and the JSON has its keys. Speed not asserted.
    from bevlib.bench import (TARGET_LOVASZ_SPEEDUP, _reference_lovasz_softmax, bench_lovasz,
                              format_lovasz_table, main)
    from bevlib.losses import lovasz_softmax

    res = bench_lovasz(repeats=2, warmup=0, batch=2, hw=(8, 32), classes=5, threads=1)
    assert res["benchmark"] == "lovasz" and res["schema_version"] == 1
    cfg = res["config"]
    assert cfg["batch"] == 2 and cfg["hw"] == [8, 32] and cfg["classes"] == 5 and cfg["threads"] == 1
    assert cfg["ignore_index"] == 255 and cfg["pass"] == "forward+backward"
    assert res["environment"]["torch_threads"] == 1
    assert res["targets"] == {"speedup_min": TARGET_LOVASZ_SPEEDUP, "max_abs_diff": 1e-5}
    (r,) = res["results"]
    assert r["library_ms"] > 0 and r["reference_ms"] > 0 and r["speedup_paired"] > 0
    assert r["speedup"] == pytest.approx(r["reference_ms"] / r["library_ms"], rel=0.02)
    assert r["loss_max_abs_diff"] <= 1e-5 and r["grad_max_abs_diff"] <= 1e-5 and r["within_tolerance"] is True
    assert 0 < r["labelled_pixels"] < 2 * 8 * 32 and r["present_classes"] == 5
    assert res["summary"]["meets_target"] == r["meets_target"] and "lovasz" in format_lovasz_table(res)
    # the reference skips absent classes, as the library's classes="present"
    logits = torch.randn(1, 4, 3, 5)
    target = torch.randint(0, 2, (1, 3, 5))
    target[0, 0, 0] = 255
    assert float(_reference_lovasz_softmax(logits, target, 255)) == pytest.approx(
        float(lovasz_softmax(logits, target)), abs=1e-6)
    with pytest.raises(ValueError, match="repeats"):
        bench_lovasz(repeats=0)
    out = tmp_path / "lovasz.json"
    assert main(["lovasz", "--batch", "1", "--hw", "8", "16", "--classes", "3", "--repeats", "1",
                 "--warmup", "0", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "lovasz" and saved["results"][0]["within_tolerance"] is True


TINY_RANGEVIT = {"image_size": [8, 32], "stem_channels": 16, "stem_base_channels": 8, "embed_dim": 32,
                 "depth": 1, "heads": 2, "decoder_channels": 16}


def test_rangevit_bench_schema_tiny(tmp_path):
    # python -m bevlib.bench rangevit with a tiny model: one step timed, FLOPs counted, share of
    # the (small) mm peak reported. Values are machine-dependent: only their consistency is checked.
    from bevlib.bench import _rangevit_input, bench_rangevit, format_rangevit_table, main

    image, pts, u, v = _rangevit_input(8, 32, 200, seed=0)
    assert image.shape == (1, 5, 8, 32) and pts.shape[1] == 3 and 150 < len(pts) < 250
    assert int(u.min()) >= 0 and int(u.max()) < 32 and int(v.min()) >= 0 and int(v.max()) < 8
    res = bench_rangevit(steps=1, warmup=0, threads=1, model_cfg=TINY_RANGEVIT, points=200, peak_n=128)
    assert res["benchmark"] == "rangevit" and res["schema_version"] == 1
    cfg = res["config"]
    assert cfg["model"]["embed_dim"] == 32 and cfg["image_hw"] == [8, 32] and cfg["threads"] == 1
    assert cfg["steps"] == 1 and cfg["peak_mm_n"] == 128 and cfg["points"] == len(pts)
    (r,) = res["results"]
    assert r["step_ms"] > 0 and r["flops_per_step"] > 0 and r["peak_mm_gflops_s"] > 0
    assert r["flops_by_module"]["Global"] == r["flops_per_step"]
    assert sum(r["flops_by_op"].values()) == r["flops_per_step"]
    assert r["share_of_peak"] == pytest.approx(r["flops_per_step"] / (r["step_ms"] / 1e3)
                                               / (r["peak_mm_gflops_s"] * 1e9), rel=0.05)
    assert r["share_of_peak_fastest_step"] >= r["share_of_peak"] > 0
    assert res["summary"]["share_of_peak"] == r["share_of_peak"] and "GFLOP" in format_rangevit_table(res)
    with pytest.raises(ValueError, match="steps"):
        bench_rangevit(steps=0)
    out = tmp_path / "rangevit.json"
    assert main(["rangevit", "--steps", "1", "--warmup", "0", "--threads", "1", "--points", "100",
                 "--model-config", json.dumps(TINY_RANGEVIT), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["flops_per_step"] > 0


@pytest.mark.slow   # the paper-size RangeViT on CPU: ~2 s a step, ~15 s in all
def test_rangevit_bench_quick_at_paper_sizes(tmp_path):
    out = tmp_path / "rangevit.json"
    r = subprocess.run([sys.executable, "-m", "bevlib.bench", "rangevit", "--quick", "--steps", "1",
                        "--warmup", "0", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    m = res["config"]["model"]
    assert (m["stem_channels"], m["embed_dim"], m["depth"], m["heads"]) == (256, 384, 12, 6)
    assert res["config"]["image_hw"] == [32, 384] and 5500 < res["config"]["points"] < 7500
    assert res["config"]["quick"] is True and 0 < res["results"][0]["share_of_peak"]
    assert "share" in r.stdout


def test_depth_bench_schema_and_writes_json(tmp_path):
    # python -m bevlib.bench depth at a small size: schema, the pixel-count scaling of the reported
    # 11 ms KITTI frame, threads restored. Speed is reported, not asserted.
    import cv2

    from bevlib.bench import main
    from bevlib.depth_completion import bench_depth, format_depth_table

    before = cv2.getNumThreads()
    res = bench_depth(repeats=2, warmup=0, wh=(320, 180))
    assert cv2.getNumThreads() == before
    assert res["benchmark"] == "depth" and res["reported"]["scaled_ms"] == pytest.approx(11.0 * 320 * 180 / (1242 * 375),
                                                                                         abs=1e-3)
    assert {(r["blur"], r["threads"]) for r in res["results"]} == {(b, n) for b in ("bilateral", "gaussian")
                                                                   for n in (1, 2)}
    for r in res["results"]:
        assert 0 < r["min_ms"] <= r["median_ms"]
        assert r["ratio_to_reported"] == pytest.approx(r["median_ms"] / r["reported_scaled_ms"], rel=0.01)
    assert "reported" in format_depth_table(res)
    with pytest.raises(ValueError, match="repeats"):
        bench_depth(repeats=0)
    out = tmp_path / "depth.json"
    assert main(["depth", "--wh", "160", "90", "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["results"]) == 4


def test_experiment_benches_load_only_when_asked():
    # The library benches must run where the experiment packages' data stack (nuscenes-devkit, shapely) is
    # absent, e.g. a GPU machine with only torch; the listed one-line help must be the module's own.
    import argparse
    import importlib
    import subprocess
    import sys

    from bevlib.bench import EXPERIMENT_BENCHES

    code = ("import sys\nfrom bevlib.bench import main\n"
            "try:\n    main(['sparse', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('bevlib.experiments') or m == 'shapely'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    for name, (module, help_line) in EXPERIMENT_BENCHES.items():
        sub = argparse.ArgumentParser().add_subparsers(dest="what")
        getattr(importlib.import_module(module), f"add_{name}_parser")(sub)
        assert sub._choices_actions[0].help == help_line, name
