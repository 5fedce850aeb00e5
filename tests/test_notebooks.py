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
    if name == "05_pareto":  # the oracle's identity, so that a search made again can be checked against it
        oracle = json.loads((project_root() / "results" / "smoke" / name / "experiment.json").read_text())["oracle"]
        assert set(oracle) == {"supernet_key", "weights_digest"} and all(oracle.values())


def test_every_notebook_has_one_parameters_cell():
    import nbformat

    assert NOTEBOOKS, "no notebooks found"
    for name in NOTEBOOKS:
        nb = nbformat.read(project_root() / "notebooks" / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert "profile" in tagged[0].source and "seed" in tagged[0].source


def test_every_notebook_cell_has_a_unique_id():
    """nbformat 4.5 cell ids: a missing one is a warning today and an error in later nbformat."""
    import json

    for name in NOTEBOOKS:
        cells = json.loads((project_root() / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        ids = [c.get("id") for c in cells]
        assert None not in ids and len(set(ids)) == len(ids), name


def promised_figures() -> dict[str, list[str]]:
    """``{notebook: [key pattern, ...]}`` from the README's notebook table (third column)."""
    import re

    promised = {}
    for line in (project_root() / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\d\d_\w+)`", cells[0]) if len(cells) == 3 else None
        if match:
            promised[match.group(1)] = re.findall(r"`([^`]+)`", cells[2])
    return promised


def missing_or_not_finite(figures: dict, patterns: list[str]) -> list[str]:
    """Patterns with no matching key, or matching keys whose value is not a finite number."""
    import math
    import re

    bad = []
    for pattern in patterns:
        regex = re.compile("^" + re.sub(r"<[a-z]+>", "[^.]+", re.escape(pattern).replace(r"\<", "<")
                                        .replace(r"\>", ">")) + "$")
        keys = [k for k in figures if regex.match(k)]
        if not keys:
            bad.append(f"{pattern}: no such key")
        bad += [f"{k}: {figures[k]!r}" for k in keys
                if not isinstance(figures[k], (int, float)) or not math.isfinite(figures[k])]
    return bad


def test_readme_promises_a_figure_list_for_every_notebook():
    assert set(promised_figures()) == set(NOTEBOOKS)


def test_promise_matching_finds_missing_and_null_figures():
    figures = {"hv.random": 0.2, "hv.epr": None, "cache_speedup": 3.0}
    assert missing_or_not_finite(figures, ["cache_speedup"]) == []
    assert missing_or_not_finite(figures, ["hv.<method>"]) == ["hv.epr: None"]
    assert missing_or_not_finite(figures, ["igd.<method>"]) == ["igd.<method>: no such key"]


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_smoke_summary_has_every_promised_figure(name):
    path = project_root() / "results" / "smoke" / name / "summary.json"
    if not path.is_file():
        pytest.skip(f"{path} not written (run the smoke notebooks first)")
    figures = json.loads(path.read_text())["figures"]
    assert missing_or_not_finite(figures, promised_figures()[name]) == []


WITHOUT_TABLE_KEY = {"04_ranking": "bench.n_archs", "07_ws_shortfall": "n_archs"}  # all they report then


def without_table(name: str, figures: dict) -> bool:
    """The README's first conditional promise: ``04_ranking`` without a usable benchmark table
    (fewer than 3 architectures of 2 seeds) reports only the table's counts, and
    ``07_ws_shortfall`` without 04's scores only ``n_archs`` = 0."""
    if name == "07_ws_shortfall":
        return (figures.get("n_archs") or 0) == 0
    return name == "04_ranking" and (figures.get("bench.n_archs") or 0) < 3


def finals_pending(folder) -> bool:
    """The README's second conditional promise: ``05_pareto`` reports its final networks as
    pending, without ``final.*`` figures, while none of their items is trained
    (``final_status.json``: ``done`` 0)."""
    path = folder / "final_status.json"
    if not path.is_file():
        return False
    status = json.loads(path.read_text())
    return status["done"] == 0 and status["pending"] > 0


def test_final_networks_may_only_be_missing_while_none_is_trained(tmp_path):
    assert not finals_pending(tmp_path)
    (tmp_path / "final_status.json").write_text(json.dumps({"items": 12, "done": 0, "pending": 12}))
    assert finals_pending(tmp_path)
    (tmp_path / "final_status.json").write_text(json.dumps({"items": 12, "done": 3, "pending": 9}))
    assert not finals_pending(tmp_path)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_cpu_summary_has_every_promised_figure(name):
    folder = project_root() / "results" / "cpu" / name
    figures = json.loads((folder / "summary.json").read_text())["figures"]
    promised = [WITHOUT_TABLE_KEY[name]] if without_table(name, figures) else promised_figures()[name]
    if finals_pending(folder):
        assert not any(k.startswith("final.") for k in figures)
        promised = [p for p in promised if not p.startswith("final.")]
    assert missing_or_not_finite(figures, promised) == []
    if without_table(name, figures):  # no invented numbers beside the counts
        assert set(figures) <= {"bench.n_archs", "bench.n_rows", "bench.n_seeds", "bench.train_s_total", "n_archs"}
