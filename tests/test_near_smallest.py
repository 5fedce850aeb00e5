"""The near-smallest-path pairs (linas_lib.analysis.near_smallest): selection, matching, the paired summary."""

import numpy as np
import pytest

from linas_lib.analysis import near_smallest as N
from linas_lib.space import arch_string


def _pool():
    # choice 0 is the smallest path's in every layer; archs 0-2 share >= 2 layers with it, 3-7 none
    choices = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 2, 2], [0, 4, 0, 4, 4], [3, 3, 3, 3, 3], [4, 4, 4, 4, 4],
                        [5, 5, 5, 5, 5], [6, 6, 6, 6, 6], [7, 7, 7, 7, 7]])
    miou = np.array([0.80, 0.78, 0.40, 0.79, 0.60, 0.81, 0.50, 0.77])
    lat = np.full((8, 1), 1.0)
    lat[5] = 99.0  # over the only budget: never in the pool
    return choices, miou, lat


def test_select_pairs_matches_near_architectures_in_the_best_ws_quarter_on_size_then_ws():
    choices, miou, lat = _pool()
    smallest, params = np.zeros(5, dtype=np.int64), np.array([100, 100, 100, 300, 105, 100, 95, 100.0])
    pairs = N.select_pairs(smallest, choices, miou, lat, [10.0], params, 5, np.random.default_rng(0))
    # the best WS quarter of the 7 in-budget archs: miou >= the 0.75 quantile (0.785); near there: arch 0 only.
    # Arch 3 has the closest WS (0.79) but 3x the parameters; arch 5 is over budget: arch 7 (0.77, same size)
    assert [(p["near_arch"], p["far_arch"]) for p in pairs] == [(arch_string(choices[0]), arch_string(choices[7]))]
    assert pairs[0]["near_layers"] == 2 and pairs[0]["far_params"] == 100.0
    assert N.select_pairs(smallest, choices, miou, lat, [10.0], params, 5, np.random.default_rng(0)) == pairs
    assert N.select_pairs(smallest, choices, miou, lat, [10.0], params, 0, np.random.default_rng(0)) == []
    # an excluded architecture (a final pick, its accuracy known) is never drawn: out of the pool,
    # arch 1 (0.78) reaches the best quarter instead
    without = N.select_pairs(smallest, choices, miou, lat, [10.0], params, 5, np.random.default_rng(0),
                             exclude=[arch_string(choices[0])])
    assert [p["near_arch"] for p in without] == [arch_string(choices[1])]
    no_size = N.select_pairs(smallest, choices, miou, lat, [10.0], np.array([100, 1, 1, 1, 1, 1, 1, 1.0]), 5,
                             np.random.default_rng(0))
    assert no_size == []  # no far network of its size: no pair


def test_pair_rows_and_summary_read_near_minus_far_over_the_trained_pairs():
    pairs = [{"pair": k, "near_arch": f"n{k}", "far_arch": f"f{k}", "near_ws_miou": 0.7, "far_ws_miou": 0.7,
              "near_params": 100.0, "far_params": 100.0, "near_layers": 2} for k in range(3)]
    items = [{"arch": a, "seed": s, "test_miou": v} for a, v in (("n0", 0.70), ("f0", 0.72), ("n1", 0.69), ("f1", 0.70))
             for s in (0, 1)]
    items.append({"arch": "n2", "seed": 0, "test_miou": 0.5})  # its partner is pending: no difference
    rows = N.pair_rows(pairs, items)
    assert rows[0]["diff_pts"] == pytest.approx(-2.0) and rows[1]["diff_pts"] == pytest.approx(-1.0)
    assert "diff_pts" not in rows[2] and rows[2]["near_n_seeds"] == 1 and rows[2]["far_n_seeds"] == 0
    out = N.summary(rows)
    assert out["near_smallest.diff_pts"] == pytest.approx(-1.5) and out["near_smallest.n_pairs_trained"] == 2.0
    half = 12.706204736174707 * np.std([-2.0, -1.0], ddof=1) / np.sqrt(2)  # t(0.975, 1)
    assert out["near_smallest.diff_ci95_low_pts"] == pytest.approx(-1.5 - half)
    assert out["near_smallest.ws_diff_pts"] == pytest.approx(0.0) and N.summary([]) == {}
    assert out["near_smallest.params_ratio"] == 1.0


def test_read_pairs_names_the_missing_file(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from linas_lib import paths
    from linas_lib.analysis.bench import BenchError

    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    with pytest.raises(BenchError, match=r"near_smallest_pairs.csv does not exist: run notebook 05_pareto"):
        N.read_pairs(SimpleNamespace(name="p"))
    folder = tmp_path / "results" / "p" / "05_pareto"
    folder.mkdir(parents=True)
    a, b = arch_string([0] * 5), arch_string([3] * 5)
    (folder / "near_smallest_pairs.csv").write_text(f"pair,near_arch,far_arch,near_ws_miou,far_ws_miou\n0,{a},{b},0.7,0.7\n")
    assert N.read_pairs(SimpleNamespace(name="p"))[0]["far_arch"] == b
