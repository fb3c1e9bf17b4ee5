"""Byte-level regression test of the synthetic world (bevlib.data.world).

The tiny test world must hash exactly as recorded in ``golden/world_tiny_seed0.sha256`` (one line per
file: ``<sha256>  <path relative to the world root>``, sorted by path). Every file is covered: two
generations with equal configs are byte-identical (no timestamps or run-dependent content), so any
difference is a real change of the generated world. Refactors must keep this test green.

When a change of the output is intended, bump ``_GENERATOR_VERSION`` in
``bevlib/data/world/config.py`` and rewrite the golden file with::

    .venv/bin/python tests/test_world_golden.py

The bytes also depend on the numeric stack (numpy's random streams and FFT, OpenCV's JPEG/PNG
encoders, shapely/GEOS): after a dependency upgrade that changes them, check the images still look
right, then regenerate.
"""
import hashlib
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden" / "world_tiny_seed0.sha256"
#: The same tiny world with camera_timing="keyframe" (every sensor at the keyframe's pose): the
#: digest the generator wrote before per-camera poses existed, kept to show the option changes nothing.
GOLDEN_KEYFRAME_TIMING = GOLDEN.with_name("world_tiny_seed0_keyframe_timing.sha256")


def tree_digest(root: Path) -> dict:
    """{path relative to ``root`` (POSIX separators): sha256 hex digest of the file's bytes}."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def format_digest(digest: dict) -> str:
    return "".join(f"{digest[path]}  {path}\n" for path in sorted(digest))


def read_digest(path: Path) -> dict:
    rows = (line.split("  ", 1) for line in path.read_text().splitlines() if line.strip())
    return {rel: sha for sha, rel in rows}


def _compare(expected: dict, actual: dict) -> None:
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(p for p in expected.keys() & actual.keys() if expected[p] != actual[p])
    report = [f"{len(changed)} changed, {len(missing)} missing, {len(extra)} unexpected of {len(expected)} files"]
    report += [f"  changed:    {p}" for p in changed]
    report += [f"  missing:    {p}" for p in missing]
    report += [f"  unexpected: {p}" for p in extra]   # also what a test writing into the shared world leaves
    assert not (missing or extra or changed), "\n".join(report)


def test_tiny_world_matches_golden_digest(tiny_world):
    _compare(read_digest(GOLDEN), tree_digest(tiny_world))


def test_keyframe_camera_timing_keeps_the_single_pose_world_bytes(tmp_path):
    """camera_timing="keyframe" writes, byte for byte, the world of the generator before per-camera
    poses; and it differs from the default world (so the option is not a no-op)."""
    import dataclasses

    from conftest import TINY

    from bevlib.data.world import generate_world

    cfg = dataclasses.replace(TINY, camera_timing="keyframe")
    assert cfg.hash() != TINY.hash() and "camera_timing" not in cfg.as_dict()
    expected = read_digest(GOLDEN_KEYFRAME_TIMING)
    assert expected != read_digest(GOLDEN)
    _compare(expected, tree_digest(generate_world(tmp_path / "tiny", cfg, progress=False)))


if __name__ == "__main__":
    import tempfile

    from conftest import TINY

    from bevlib.data.world import generate_world

    with tempfile.TemporaryDirectory() as tmp:
        world = generate_world(Path(tmp) / "tiny", TINY, progress=False)
        GOLDEN.write_text(format_digest(tree_digest(world)))
    print(f"wrote {GOLDEN}")
