"""Progress bars that suit where the code runs.

In JupyterLab tqdm draws live widgets; in a headless notebook run (papermill, ``make demo``) those
widgets never update and would sit at 0 % in the log. ``BEVLIB_PROGRESS_BARS=0`` turns every bar
off while the trainer's one line per epoch still reaches the terminal.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def bars_enabled() -> bool:
    """False when ``$BEVLIB_PROGRESS_BARS`` is 0 / false / no / off."""
    return os.environ.get("BEVLIB_PROGRESS_BARS", "1").strip().lower() not in ("0", "false", "no", "off")


def bar(*args, disable: bool = False, **kw):
    """A ``tqdm.auto`` bar (same arguments), disabled when bars are switched off."""
    return tqdm(*args, disable=disable or not bars_enabled(), **kw)


def write(line: str) -> None:
    """Print a line without breaking an active bar (``tqdm.write``)."""
    tqdm.write(line)
