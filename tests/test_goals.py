"""The goals table (``linas_lib.goals``): known figures in, statuses out; the README's copy is current."""

from __future__ import annotations

import json

import pytest

from linas_lib import cli, goals, paper
from linas_lib.goals import Goal
from linas_lib.paths import project_root


def _row(goal, figures, notebook="nb"):
    return goals.goal_row(goal, {notebook: figures})


def test_a_single_figure_against_a_number_with_its_ci_and_context():
    goal = Goal(1, "tau >= 0.8", "nb", "tau.x", ">=", 0.8, lo="lo.x", hi="hi.x", context=(("ceiling", "other", "c"),))
    row = goals.goal_row(goal, {"nb": {"tau.x": 0.794, "lo.x": 0.749, "hi.x": 0.835}, "other": {"c": 0.9}})
    assert row == {"issue": "1", "goal": "tau >= 0.8", "figure": "0.794 [0.749, 0.835]; ceiling: 0.900",
                   "status": "not met; a 95 % CI reaches past the mark"}
    assert _row(goal, {"tau.x": 0.85, "lo.x": 0.81, "hi.x": 0.9})["status"] == "met"


def test_a_qualifier_leads_the_status_unless_its_two_figures_are_equal():
    goal = Goal(1, "share >= 0.99", "nb", "share.x", ">=", 0.99, qualifier="descriptive only",
                qualifier_when=("equal", "cells"))
    assert _row(goal, {"share.x": 0.999, "equal": 1086, "cells": 1100})["status"] == \
        "descriptive only (read as a goals row: met)"
    assert _row(goal, {"share.x": 0.999, "equal": 1100, "cells": 1100})["status"] == "met"
    assert _row(goal, {"share.x": 0.999})["status"] == "descriptive only (read as a goals row: met)"  # no check: kept
    assert _row(Goal(1, "s", "nb", "s.x", ">=", 0.99, qualifier="post hoc"), {"s.x": 0.5})["status"] == \
        "post hoc (read as a goals row: not met)"


def test_a_goal_whose_perfect_predictor_misses_the_mark_says_it_cannot_be_told():
    goal = Goal(9, "mape <= 2", "nb", "mape.x", "<=", 2.0, floor="floor.x", digits=2)
    assert _row(goal, {"mape.x": 1.9, "floor.x": 2.1})["status"] == (
        "met; not testable on this data: a perfect predictor misses the mark too (2.10)")
    assert _row(goal, {"mape.x": 3.0, "floor.x": 1.0})["status"] == "not met", "a floor below the mark: testable"
    assert _row(goal, {"mape.x": 1.9})["status"] == "met", "no floor figure: nothing to say"
    ci = Goal(9, "mape <= 2", "nb", "mape.x", "<=", 2.0, floor="floor.x", floor_lo="lo.x", floor_hi="hi.x", digits=2)
    assert _row(ci, {"mape.x": 1.9, "floor.x": 2.1, "lo.x": 1.8, "hi.x": 2.4})["status"] == "met", (
        "a floor whose CI reaches below the mark: a perfect predictor might meet it")
    assert _row(ci, {"mape.x": 1.9, "floor.x": 2.3, "lo.x": 2.1, "hi.x": 2.5})["status"].endswith(
        "misses the mark too (2.30 [2.10, 2.50])")
    each = Goal(9, "each >= 99", "nb", "w.<x>", ">=", 99.0, pick="each", floor="f.<x>", digits=0)
    row = _row(each, {"w.a": 98.0, "w.b": 100.0, "f.a": 90.0, "f.b": 99.5})
    assert row["status"] == "not met (1 of 2); not testable on this data: a perfect predictor misses the mark too (a 90)"


def test_the_best_match_of_a_wildcard_names_its_ties_and_reads_its_own_ci():
    goal = Goal(1, "best <= 0.1", "nb", "e.<x>", "<=", 0.1, pick="min", lo="lo.<x>", hi="hi.<x>")
    figures = {"e.a": 0.09, "e.b": 0.09, "e.c": 1.0, "lo.a": 0.05, "hi.a": 0.12, "lo.b": 0.0, "hi.b": 0.5}
    row = _row(goal, figures)
    assert row["figure"] == "a (tied: b [0.000, 0.500]) 0.090 [0.050, 0.120]"
    assert row["status"] == "met; a 95 % CI reaches past the mark"
    inside = {**figures, "hi.a": 0.095}  # a's CI within the mark, its tie's not: the straddle is still said
    assert _row(goal, inside)["status"] == "met; a 95 % CI reaches past the mark"
    assert _row(Goal(1, "max", "nb", "e.<x>", ">=", 0.5), figures)["figure"] == "c 1.000"


def test_each_match_must_meet_the_mark_and_among_and_skip_restrict_the_wildcard():
    goal = Goal(1, "each <= 1", "nb", "gap.<x>", "<=", 1.0, pick="each", digits=1)
    figures = {"gap.a": 0.5, "gap.b": 1.5, "gap.c_held_out": 3.0, "gap.d": None}
    assert _row(goal, figures) == {"issue": "1", "goal": "each <= 1", "figure": "a 0.5; b 1.5; c_held_out 3.0; d n/a",
                                   "status": "not met (1 of 4)"}  # a null figure is not a pass
    assert _row(Goal(1, "g", "nb", "gap.<x>", "<=", 1.0, pick="each", skip="_held_out"), figures)["status"] == "not met (1 of 3)"
    assert _row(Goal(1, "g", "nb", "gap.<x>", "<=", 1.0, pick="each", among=("a",)), figures)["status"] == "met"
    row = _row(Goal(1, "g", "nb", "gap.<x>", "<=", 1.0, pick="each", among=("a", "e"), digits=1), figures)
    assert row["figure"] == "a 0.5; e n/a" and row["status"] == "not met (1 of 2)"  # a missing target is not a pass


def test_a_censored_ci_end_is_open_and_a_goal_can_need_its_ci_to_exclude_a_value():
    goal = Goal(12, "g", "nb", "e.<x>", "<=", 0.1, pick="min", lo="lo.<x>", hi="hi.<x>", excludes=1.0)
    row = _row(goal, {"e.a": 0.09, "lo.a": 0.05, "hi.a": None})
    assert row["figure"] == "a 0.090 [0.050, open]" and row["status"] == "not met; a 95 % CI reaches past the mark"
    assert _row(goal, {"e.a": 0.09, "lo.a": 0.05, "hi.a": 0.5})["status"] == "met; a 95 % CI reaches past the mark"
    assert _row(goal, {"e.a": 0.09})["status"] == "not met"  # no CI: the exclusion cannot be read


def test_a_mark_that_is_another_figure_takes_its_best_match():
    goal = Goal(11, "ws above baselines", "nb", "tau.ws.<x>", ">", "tau.<x>", among=("flops", "params"))
    figures = {"tau.ws.a": 0.65, "tau.ws.b": 0.5, "tau.flops": 0.36, "tau.params": 0.7}
    row = _row(goal, figures)
    assert row["figure"] == "a 0.650 against `tau.params` 0.700" and row["status"] == "not met"
    assert _row(Goal(11, "near", "nb", "tau.near", ">", "tau.flops"), {"tau.near": 0.4, "tau.flops": 0.36})["status"] == "met"


def test_the_selected_match_is_the_one_without_an_unselected_figure_not_the_best():
    goal = Goal(11, "selected >= 0.8", "nb", "tau.ws.<x>", ">=", 0.8, pick="selected", unselected="gap.<x>")
    figures = {"tau.ws.a": 0.6, "tau.ws.b": 0.7, "gap.b": 0.1}  # a was selected (on validation): b has a gap to it
    assert _row(goal, figures) == {"issue": "11", "goal": "selected >= 0.8", "figure": "a 0.600", "status": "not met"}
    row = _row(goal, {"tau.ws.a": 0.6, "tau.ws.b": 0.7})
    assert row["status"] == "not measured" and "2 lack `gap.<x>`" in row["figure"]


def test_missing_figures_read_as_not_measured_and_scale_shows_percent():
    assert _row(Goal(1, "g", "nb", "absent", ">=", 1.0), {})["status"] == "not measured"
    assert _row(Goal(1, "g", "nb", "x", ">", "absent"), {"x": 1.0})["status"] == "not measured"
    assert _row(Goal(1, "g", "nb", "f", ">=", 0.99, scale=100.0, digits=1), {"f": 0.998})["figure"] == "99.8"


def test_every_goal_is_well_formed():
    for goal in goals.GOALS:
        assert goal.op in goals.OPS and goal.pick in ("max", "min", "selected", "each"), goal
        assert (goal.pick == "selected") == bool(goal.unselected), goal
        assert goal.key.count(goals.WILDCARD) <= 1 and all(goals.WILDCARD not in k for _, _, k, *_ in goal.context)
        assert goal.floor.count(goals.WILDCARD) == goal.key.count(goals.WILDCARD) or not goal.floor, goal
        assert bool(goal.floor_lo) == bool(goal.floor_hi) and (goal.floor or not goal.floor_lo), goal


def test_the_readme_block_is_replaced_and_its_markers_are_required():
    text = "intro\n<!-- goals:cpu:begin -->\nold\n<!-- goals:cpu:end -->\nrest\n"
    assert goals.with_goals(text, "cpu", "| new |\n") == "intro\n<!-- goals:cpu:begin -->\n| new |\n<!-- goals:cpu:end -->\nrest\n"
    with pytest.raises(ValueError, match="README.md: no goals block for profile 'full'"):
        goals.with_goals(text, "full", "x")


def test_linas_goals_writes_the_table_and_refuses_a_profile_without_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LINAS_ROOT", str(tmp_path))
    assert cli.main(["goals", "--profile", "tiny"]) == 1
    assert "results/tiny/ holds no summary.json" in capsys.readouterr().err
    (tmp_path / "results" / "tiny" / "04_ranking").mkdir(parents=True)
    (tmp_path / "results" / "tiny" / "04_ranking" / "summary.json").write_text(json.dumps({"figures": {"tau.near": 0.5, "tau.flops": 0.3}}))
    (tmp_path / "README.md").write_text("<!-- goals:tiny:begin -->\n<!-- goals:tiny:end -->\n")
    assert cli.main(["goals", "--profile", "tiny", "--readme"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "| 11 | NEAR above FLOPs | 0.500 against `tau.flops` 0.300 | met |" in readme
    assert (tmp_path / "results" / "tiny" / "goals.md").read_text() in readme
    (tmp_path / "results" / "tiny" / "04_ranking" / "summary.json").write_text("{not json")
    assert cli.main(["goals", "--profile", "tiny"]) == 1
    assert "04_ranking/summary.json: not valid JSON" in capsys.readouterr().err


def test_each_target_goal_counts_a_missing_target_as_missed():
    goal = goals.Goal(12, "gap", "nb", "gap.<x>", "<=", 1.0, pick="each", among_targets="all")
    figures = {"nb": {"gap.a": 0.5, "gap.b": 0.2}}
    assert goals.goal_row(goal, figures)["status"] == "met"  # no profile targets known: the matches only
    row = goals.goal_row(goal, {**figures, goals.TARGETS: {"all": ["a", "b", "c"], "local": ["a"]}})
    assert row["status"] == "not met (2 of 3)" and "c n/a" in row["figure"]
    local = goals.Goal(9, "c3", "nb", "gap.<x>", "<=", 1.0, pick="each", among_targets="local")
    assert goals.goal_row(local, {**figures, goals.TARGETS: {"all": ["a", "b"], "local": ["a"]}})["figure"] == "a 0.500"
    none = goals.goal_row(local, {**figures, goals.TARGETS: {"all": ["a", "b"], "local": []}})
    assert none["status"] == "not measured"  # no local target: nothing to read, not every match


def test_a_count_in_the_context_reads_as_a_count_and_a_null_one_as_said():
    goal = goals.Goal(11, "g", "nb", "tau", ">=", 0.8, context=(("needed", "nb", "n", "none reaches it"),
                                                                   ("other", "nb", "m", "none")))
    row = goals.goal_row(goal, {"nb": {"tau": 0.7, "n": 32.0, "m": None}})
    assert row["figure"] == "0.700; needed: 32; other: none"
    assert goals.goal_row(goal, {"nb": {"tau": 0.7}})["figure"] == "0.700; needed: n/a; other: n/a"  # missing


def test_the_seed_extension_is_read_beside_the_summaries(tmp_path, monkeypatch):
    monkeypatch.setenv("LINAS_ROOT", str(tmp_path))
    (tmp_path / "results" / "tiny" / "bench").mkdir(parents=True)
    assert goals.BENCH_EXTENSION not in paper.read_goal_figures("tiny")
    agreement = {"n_archs": 7, "tau_half.test_miou": 0.81, "tau_half_ci_low.test_miou": 0.7,
                 "tau_half_ci_high.test_miou": 0.9}
    path = tmp_path / "results" / "tiny" / "bench" / "extension.json"
    path.write_text(json.dumps({"agreement": agreement, "items": 20, "done": 14}))
    figures = paper.read_goal_figures("tiny")
    assert figures[goals.BENCH_EXTENSION] == {**agreement, "items": 20, "done": 14}
    row = next(r for r in goals.goal_rows(figures) if "split-half" in r["goal"])
    assert row["figure"] == ("0.810 [0.700, 0.900]; architectures with four seeds: 7; extension items done: 14; "
                             "in all: 20")
    path.write_text("{")
    with pytest.raises(ValueError, match="extension.json: not valid JSON"):
        paper.read_goal_figures("tiny")
    path.write_text(json.dumps({"agreement": agreement}))
    with pytest.raises(ValueError, match="extension.json: lacks items, done; rebuild it"):
        paper.read_goal_figures("tiny")


def test_the_committed_goals_table_and_the_readme_copy_are_current():
    root = project_root()
    table = goals.goals_markdown(paper.read_goal_figures("cpu"))
    assert (root / "results" / "cpu" / "goals.md").read_text() == table, "run: linas goals --profile cpu --readme"
    readme = (root / "README.md").read_text()
    start, stop = goals.readme_block(readme, "cpu")
    assert readme[start:stop] == table, "README.md's goals block is stale: run linas goals --profile cpu --readme"


def test_the_whole_space_study_row_reads_its_arms_not_their_ci_keys():
    from linas_lib.goals import GOALS, N08

    goal = next(g for g in GOALS if g.notebook == N08)
    key = "study.space.hv_frac_reference."
    figures = {key + "surrogate_fingerprint": 0.88, key + "surrogate_fingerprint_ci95_high": 0.995,
               key + "surrogate_fingerprint_ci95_low": 0.87, key + "surrogate_fingerprint_space": 0.9,
               key + "surrogate_fingerprint_space_ci95_low": 0.89, key + "surrogate_fingerprint_space_ci95_high": 0.91}
    row = _row(goal, figures, N08)
    assert row["figure"] == "surrogate_fingerprint_space 90.0 [89.0, 91.0]" and row["status"] == "not met"


def test_a_wildcard_never_reads_a_ci_end_as_a_match():
    from linas_lib.goals import Goal

    goal = Goal(12, "g", "nb", "a.<x>", ">=", 0.99, lo="a.<x>_ci95_low", hi="a.<x>_ci95_high")
    figures = {"a.m": 0.9, "a.m_ci95_low": 0.85, "a.m_ci95_high": 0.995}
    row = _row(goal, figures, "nb")
    assert row["figure"] == "m 0.900 [0.850, 0.995]" and row["status"].startswith("not met;")
