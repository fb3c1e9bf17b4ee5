"""Run a notebook headless on one of its presets, as a user would (papermill in a subprocess)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_preset(name: str, executed: Path, cache: Path, preset: str = "smoke", timeout: int = 600, **params) -> None:
    """``papermill notebooks/<name>.ipynb <executed> -f params/<name>/<preset>.yaml -p k v ...`` with
    ``BEVLIB_CACHE=<cache>``; fails the test with the tail of the output when the notebook fails."""
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{name}.ipynb"), str(executed),
           "-f", str(ROOT / "params" / name / f"{preset}.yaml"), "--cwd", str(ROOT / "notebooks")]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    r = subprocess.run(cmd, env=dict(os.environ, BEVLIB_CACHE=str(cache)), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
