"""Papermill runs of every notebook with the smoke profile (in order: later notebooks may
reuse what earlier ones cached)."""

import json

import pytest

from linas_lib.paths import project_root
from linas_lib.runner import run_notebook

NOTEBOOKS = sorted(p.stem for p in (project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_smoke_profile(name):
    executed = run_notebook(name, "smoke", seed=0)
    assert executed.is_file() and executed.with_suffix(".html").is_file()
    summary = json.loads((project_root() / "results" / "smoke" / name / "summary.json").read_text())
    assert summary["figures"], f"{name} wrote an empty summary.json"
    assert all(isinstance(v, (int, float)) or v is None for v in summary["figures"].values())
    assert summary["provenance"]["profile"] == "smoke"


def test_every_notebook_has_one_parameters_cell():
    import nbformat

    assert NOTEBOOKS, "no notebooks found"
    for name in NOTEBOOKS:
        nb = nbformat.read(project_root() / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert "profile" in tagged[0].source and "seed" in tagged[0].source
