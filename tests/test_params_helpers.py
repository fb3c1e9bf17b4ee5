"""Shared parameter helpers (bevlib.params): distinct seed tuples and the notebooks' output / runs folders."""
import pytest

from bevlib.params import ParameterError


def test_distinct_ints_and_study_dirs(tmp_path):
    from dataclasses import dataclass

    from bevlib.params import StudyDirs, distinct_ints
    from bevlib.paths import outputs_dir

    assert distinct_ints("seeds", [2, 0, 1]) == (2, 0, 1)
    for bad in ([], [0, 0], [0, 1.0], [True], 3, None):
        with pytest.raises(ParameterError, match="'seeds'"):
            distinct_ints("seeds", bad)

    @dataclass
    class P(StudyDirs):
        RUNS = "fam"
        output_name: str = "nb"
        output_dir: str | None = None
        runs_dir: str | None = None

    assert P().out_dir == outputs_dir("nb") and P().runs_root == outputs_dir("runs", "fam")
    assert P(output_dir=str(tmp_path)).out_dir == tmp_path and P(runs_dir=str(tmp_path)).runs_root == tmp_path
