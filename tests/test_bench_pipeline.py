"""``python -m bevlib.bench pipeline`` (issue 15, item 3): the quick bench on the tiny world runs end to
end through its CLI glue, delivers what it was asked for, and leaves the real field cache alone."""
import argparse
import json
import math
import os

from bevlib.experiments.busch2026.bench_pipeline import add_pipeline_parser, format_pipeline_table, run_pipeline


def test_quick_pipeline_bench(tiny_world, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BEVLIB_CACHE", str(cache))
    ap = argparse.ArgumentParser()
    add_pipeline_parser(ap.add_subparsers(dest="what"))
    a = ap.parse_args(["pipeline", "--quick", "--no-real", "--steps", "2", "--dataroot", str(tiny_world),
                       "--out", str(tmp_path / "p.json")])
    got = {}

    def emit(result, out, name, fmt):
        got.update(result=result, out=out, name=name, table=fmt(result))
        return 0

    assert run_pipeline(a, emit) == 0
    r = got["result"]
    assert got["name"] == "pipeline" and r["benchmark"] == "pipeline" and "training loop" in got["table"]
    json.dumps(r)                                                   # JSON-ready
    rows = {k: [x for x in r["results"] if x["kind"] == k] for k in ("field", "preload", "data", "step", "loop")}
    assert all(rows.values())
    for x in rows["data"]:                                          # every batch asked for came, full
        assert x["delivered"] == x["asked"] == 3 * x["batch"], x
        assert math.isfinite(x["keyframes_per_s"]) and x["keyframes_per_s"] > 0
    assert {(x["source"], x["workers"]) for x in rows["data"]} == {(s, w) for s in ("memory", "disk cold", "disk warm")
                                                                  for w in (0, 1)}
    for x in rows["step"]:
        assert math.isfinite(x["steps_per_s"]) and x["steps_per_s"] > 0 and x["loss_finite"]
    for x in rows["loop"]:
        assert 0.0 <= x["wait_share"] <= 1.0 and 0.0 <= x["predicted_wait_share"] <= 1.0
        assert x["steps"] == 2 and x["delivered"] == 3 * x["batch"]
        assert x["wait_ms"] <= x["step_ms"]
        if x["source"] != "memory":                                 # reading from disk filled the scratch field cache
            assert x["field_cache_files"] >= 1
    judged = r["targets"]["judged"]
    assert judged == {"dataset": "embedded", "size": "embedded-default", "source": "memory", "workers": 0}
    assert r["summary"]["wait_share"] is not None and isinstance(r["summary"]["meets_target"], bool)
    # the cold cache was a scratch one: restored afterwards, and nothing went into the real cache's fields/
    assert os.environ["BEVLIB_CACHE"] == str(cache)
    assert not (cache / "fields").exists()
    assert format_pipeline_table(r).splitlines()[-1].startswith("target: <= 10 % waiting")
