"""Study choice_truth (notebook 09): rule values over fresh fine-tune draws, the bootstrap, the
truth's seeds, and clear errors for missing or malformed inputs."""

from types import SimpleNamespace

import numpy as np
import pytest

from linas_lib.analysis import bench as B
from linas_lib.analysis import choice_truth as CT
from linas_lib.analysis import final as F
from linas_lib.analysis import final_choice as FC
from linas_lib.space import arch_string

ARCHS = [arch_string([i] * 5) for i in range(4)]


def test_rule_values_average_the_truth_of_each_draws_pick():
    # one target, candidates in WS rank order 0, 1, 2 (dyadic scores: exact sums, exact ties);
    # fine-tunes favour 1 in draws 0-1 and 2 in draws 2-3, never 0
    fresh = np.array([[0.25] * 4, [0.875, 0.75, 0.125, 0.125], [0.125, 0.125, 0.875, 0.75]])
    true = np.array([0.70, 0.60, 0.80])
    values = CT.rule_values([np.array([0, 1, 2])], fresh, true)
    assert values["ws"][0] == pytest.approx(0.70)  # WS rank 1, no draw
    assert values["single"][0] == pytest.approx((0.60 + 0.60 + 0.80 + 0.80) / 4)
    # pairs (0,1) (0,2: a tie, to the better WS rank) (0,3) (1,3: a tie) pick 1; (1,2) and (2,3) pick 2
    assert values["mean2"][0] == pytest.approx((4 * 0.60 + 2 * 0.80) / 6)
    assert values["mean4"][0] == pytest.approx(0.60)  # 1.875 each: the tie goes to WS rank 2 over rank 3


def test_contrast_ci_is_degenerate_without_noise_and_repeatable_with_it():
    fresh = np.tile(np.array([[0.5], [0.7], [0.6]]), (1, 4))  # every draw agrees: every rule picks candidate 1
    true = np.array([0.70, 0.60, 0.80])
    groups = [np.array([0, 1, 2])]
    ci = CT.contrast_ci(groups, fresh, true, [1, 1, 1], 0.0, [("mean2", "single"), ("ws", "single")], resamples=50)
    assert ci[("mean2", "single")] == (0.0, 0.0, 0.0)
    assert ci[("ws", "single")] == pytest.approx((0.10, 0.10, 0.10))
    noisy = np.array([[0.5, 0.6, 0.4, 0.5], [0.7, 0.4, 0.6, 0.5], [0.6, 0.7, 0.5, 0.4]])
    a = CT.contrast_ci(groups, noisy, true, [2, 2, 2], 0.01, [("mean2", "single")], seed=3, resamples=200)
    b = CT.contrast_ci(groups, noisy, true, [2, 2, 2], 0.01, [("mean2", "single")], seed=3, resamples=200)
    assert a == b and a[("mean2", "single")][0] < a[("mean2", "single")][2] < a[("mean2", "single")][1]


def test_truth_seeds_take_the_longest_prefix_every_candidate_has_by_the_cutoff():
    def item(arch, seed, when="2026-12-07T10:00:00+00:00", miou=0.7):
        return {"arch": arch, "seed": seed, "test_miou": miou, "test_crack_iou": 0.3, "provenance": {"timestamp": when}}

    items = [item(a, s) for a in ARCHS[:2] for s in (0, 1)] + [item(ARCHS[2], 0, miou=0.6)]
    assert CT.truth_seeds(items, ARCHS[:2]) == (0, 1)
    assert CT.truth_seeds(items, ARCHS[:3]) == (0,)  # seed 1 of the third not done yet
    assert CT.truth_seeds(items, ARCHS) == ()
    assert F.arch_means([r for r in items if r["seed"] == 0])[ARCHS[2]]["test_miou_mean"] == pytest.approx(0.6)
    late = items[:3] + [item(ARCHS[1], 1, "2026-12-07T11:00:00+00:00")]
    assert CT.truth_seeds(late, ARCHS[:2], "2026-12-07T10:50:00+00:00") == (0,)  # finished after the cutoff
    assert CT.truth_seeds(late, ARCHS[:2]) == (0, 1)


def test_clusters_link_targets_sharing_more_than_half_their_candidates():
    rows = {t: [{"arch": a} for a in archs] for t, archs in
            (("a", "pqrs"), ("b", "pqrt"), ("c", "pquv"), ("d", "wxyz"))}
    assert CT.clusters(rows) == [["a", "b"], ["c"], ["d"]]  # a-b share 3 of 4; a-c 2 of 4: not more than half


def test_fresh_matrix_names_the_missing_fine_tune():
    rows = [{"arch": ARCHS[0], "replicate": k, "finetuned_miou": 0.5 + k / 100} for k in FC.FRESH_REPLICATES]
    assert CT.fresh_matrix(rows, ARCHS[:1]).tolist() == [[0.52, 0.53, 0.54, 0.55]]
    with pytest.raises(ValueError, match=f"no fine-tune replicate 2 of {ARCHS[1]}.*linas bench retune"):
        CT.fresh_matrix(rows, ARCHS[:2])


CANDIDATES = [{"target": t, "ws_rank": r + 1, "arch": ARCHS[i], "ws_miou": 0.7 - r / 100}
              for t, order in (("t", (0, 1, 2)), ("u", (3, 1))) for r, i in enumerate(order)]


def _stub_study(monkeypatch, stub_candidates, items, replicates):
    stub_candidates(CANDIDATES, 8, items, replicates)
    monkeypatch.setattr(F, "read_chosen", lambda profile: [{"target": "t"}, {"target": "u"}])
    monkeypatch.setattr(F, "final_rows", lambda chosen, its, table, latency: [
        {"target": c["target"], "best_bench_arch": ARCHS[0], "best_bench_test_miou_mean": 0.75} for c in chosen])


def test_study_waits_for_missing_data_and_reads_what_exists(monkeypatch, stub_candidates):
    items = [{"arch": a, "seed": s, "test_miou": m + s / 1000} for a, m in zip(ARCHS, (0.70, 0.74, 0.72, 0.71))
             for s in (0, 1)]
    _stub_study(monkeypatch, stub_candidates, items[:3], [])
    profile = SimpleNamespace(name="p", search=SimpleNamespace(final_build=False))
    pending = CT.study(profile, None, [])
    assert pending["targets"] == [] and pending["status"]["truth_seeds"] == ""
    fresh = [{"arch": a, "replicate": k, "finetuned_miou": 0.6 + 0.01 * i * (k % 2)}
             for i, a in enumerate(ARCHS) for k in FC.FRESH_REPLICATES]
    check = [{"arch": a, "replicate": 0, "finetuned_miou": 0.6, "identical": "True"} for a in ARCHS]
    _stub_study(monkeypatch, stub_candidates, items, fresh + check)
    result = CT.study(profile, None, [], resamples=50)
    assert result["status"]["truth_seeds"] == "0,1" and len(result["candidates"]) == 5
    assert result["status"]["identity_ok"] == 1.0 and not any(c["descriptive_only"] for c in result["contrasts"])
    by_target = {r["target"]: r for r in result["targets"]}
    assert by_target["t"]["value_ws"] == pytest.approx(0.7005)
    assert by_target["t"]["gap_best_candidate_pts"] == pytest.approx(100 * (0.75 - 0.7405))
    assert by_target["t"]["n_candidates_within_1pt"] == 1
    primary = [c for c in result["contrasts"] if c["reading"] == "primary"][0]
    assert (primary["arm"], primary["control"]) == CT.PRIMARY and primary["verdict"] in ("helps", "hurts", "equivalent",
                                                                                          "inconclusive")
    figures = CT.figures(result)
    assert figures["choice_truth.n_truth_seeds"] == 2.0 and figures["choice_truth.n_distinct_decisions"] == 2.0
    assert figures["choice_truth.ws.n_within_1pt"] == 0.0 and figures["choice_truth.identity_ok"] == 1.0
    _stub_study(monkeypatch, stub_candidates, items, fresh + [{**check[0], "identical": "False"}])  # the oracle's fine-tunes moved
    assert all(c["descriptive_only"] for c in CT.study(profile, None, [], resamples=20)["contrasts"])


def test_read_replicates_names_the_file_and_the_bad_row(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "bench_dir", lambda profile: tmp_path)
    profile = SimpleNamespace(name="p")
    assert FC.read_replicates(profile) == [] and FC.replicate_figures(profile) == {}
    (tmp_path / FC.REPLICATES_FILE).write_text(
        "# provenance: {}\narch,replicate,finetuned_miou,committed_miou,identical\n"
        f"{ARCHS[0]},0,0.7,0.7,True\n{ARCHS[0]},2,0.6,,\n")
    assert FC.replicate_figures(profile) == {"choice.replicates.n_checked": 1.0, "choice.replicates.n_identical": 1.0,
                                             "choice.replicates.n_fresh": 1.0,
                                             "choice.replicates.max_abs_diff_pts": 0.0}
    (tmp_path / FC.REPLICATES_FILE).write_text(
        "# provenance: {}\narch,replicate,finetuned_miou\n" f"{ARCHS[0]},2,nan\n")
    with pytest.raises(B.BenchError, match="choice_replicates.csv"):
        FC.read_replicates(profile)


def test_retune_and_candidates_refuse_an_empty_or_repeated_choice_of_replicates_or_seeds():
    with pytest.raises(B.BenchError, match="replicates must be distinct.*got \\[\\]"):
        FC.retune("cpu", ())
    with pytest.raises(B.BenchError, match="got \\[2, 2\\]"):
        FC.retune("cpu", (2, 2))
    with pytest.raises(B.BenchError, match="no training seed"):
        CT.build_candidates("cpu", ())
