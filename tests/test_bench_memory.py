"""``python -m bevlib.bench memory`` (issue 15, item 4) at the --quick size: the saved-activation attribution
adds up, names the module that is large at this size, scales with batch; the child process reports a kill."""
import argparse
import json

import pytest

from bevlib.bench_common import SCHEMA_VERSION
from bevlib.experiments.busch2026.bench_memory import add_memory_parser, format_memory_table, measure_training, preset_params, run_memory


@pytest.fixture(scope="module")
def rows(tiny_world, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("BEVLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
    p = preset_params(quick=True, dataroot=str(tiny_world))
    yield {b: measure_training(p, b, steps=1) for b in (1, 2)}
    mp.undo()


def _parse(argv):
    ap = argparse.ArgumentParser()
    add_memory_parser(ap.add_subparsers(dest="what"))
    return ap.parse_args(argv)


def _emit_to(store):
    def emit(result, out, name, fmt):
        store.update(result=result, name=name, table=fmt(result))
        with open(out, "w") as f:
            json.dump(result, f)
        return 0
    return emit


def test_attribution_adds_up_and_names_the_backbone(rows):
    r = rows[1]
    s = r["saved"]
    assert s["total_bytes"] > 0
    for key in ("modules", "patterns", "top_level"):
        assert sum(x["bytes"] for x in s[key]) == s["total_bytes"], key
        assert sum(x["share"] for x in s[key]) == pytest.approx(1.0, abs=2e-3)
    # At the quick size the 6 cameras' stem maps (6, 16, 36, 64) of the tiny backbone dominate.
    top = {x["name"]: x for x in s["top_level"]}
    assert s["top_level"][0]["name"] == "backbone" and top["backbone"]["share"] > 0.5
    assert "layers" in top and "head" in top
    assert "layers.*.sca" in {x["name"] for x in s["patterns"]}
    assert s["largest_tensors"][0]["shape"] == [6, 16, 36, 64]
    assert s["largest_tensors"][0]["module"].startswith("backbone.")
    # weights saved by linear / conv layers are not activations
    assert s["parameters_saved_gib"] > 0 and "(outside the model: loss)" in top
    live = r["live"]
    assert live["phase"] in ("forward", "backward", "optimizer")
    # saved storages are allocated inside forward (the batch's targets before it) and alive when it ends
    assert live["after_forward_bytes"] >= 0.95 * s["total_bytes"]
    assert live["peak_bytes"] >= live["after_forward_bytes"]
    assert r["status"] == "ok" and r["peak_rss_gib"] >= r["rss_gib"]["model"]["peak"] > 0
    # AdamW: two moments per parameter (plus a scalar step count per tensor)
    assert r["optimizer_state_bytes"] == pytest.approx(2 * r["param_bytes"], rel=1e-2)
    assert r["grad_bytes"] == r["param_bytes"]


def test_attribution_scales_with_batch(rows):
    s1, s2 = rows[1]["saved"], rows[2]["saved"]
    bb = [next(x["bytes"] for x in s["top_level"] if x["name"] == "backbone") for s in (s1, s2)]
    # per-camera feature maps double exactly; BatchNorm's per-channel statistics do not
    assert 1.98 < bb[1] / bb[0] <= 2.0
    # At most a little over 2x: spatial cross-attention pads every camera to the busiest one's
    # visible queries, and the busiest of 12 cameras sees at least as many as the busiest of 6.
    assert 1.7 < s2["total_bytes"] / s1["total_bytes"] <= 2.05
    assert rows[2]["live"]["peak_bytes"] > rows[1]["live"]["peak_bytes"]
    assert rows[1]["params"] == rows[2]["params"]


def test_cli_child_ok_then_killed(tiny_world, rows, tmp_path):
    store = {}
    out = tmp_path / "memory.json"
    assert run_memory(_parse(["memory", "--quick", "--dataroot", str(tiny_world), "--batch", "1", "--steps", "1",
                              "--out", str(out)]), _emit_to(store)) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == store["name"] == "memory" and res["schema_version"] == SCHEMA_VERSION
    assert {"config", "environment", "results", "summary"} <= set(res)
    (row,) = res["results"]
    assert row["status"] == "ok" and len(row["step_s"]) == 1 and "step 1" in row["rss_gib"]
    # the child measured the same step as the in-process run
    assert row["saved"]["total_bytes"] == rows[1]["saved"]["total_bytes"]
    assert "layers.*.sca" in store["table"] and "peak RSS" in store["table"]
    # a limit no Python process meets: the first child is killed, the larger batch is not tried
    assert run_memory(_parse(["memory", "--quick", "--dataroot", str(tiny_world), "--batch", "2", "1",
                              "--max-rss-gib", "0.02", "--out", str(out)]), _emit_to(store)) == 0
    killed, skipped = json.loads(out.read_text())["results"]
    assert killed["status"] == "killed" and "killed (signal 9) at batch 1" in killed["message"]
    assert skipped["batch"] == 2 and skipped["status"] == "skipped"
    assert "killed (signal 9) at batch 1" in store["table"]


def test_pretrain_mode_saves_the_rendered_camera_predictions(rows, tiny_world):
    """mode="pretrain" (Eq. 1 through the renderer plus Alg. 1) keeps the rendered (B, 6, C, h, w)
    predictions for the loss's backward: more bytes saved outside the model than the BEV CE."""
    p = preset_params(quick=True, dataroot=str(tiny_world))
    pre = measure_training(p, 1, steps=1, mode="pretrain")
    outside = [{x["name"]: x["bytes"] for x in r["saved"]["top_level"]}.get("(outside the model: loss)", 0)
               for r in (rows[1], pre)]
    assert pre["status"] == "ok" and outside[1] > 2 * outside[0] > 0, outside
