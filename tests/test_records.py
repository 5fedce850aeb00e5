"""Search records (linas_lib.search.records): the committed record of the second replica's 05
replays its searches on this machine, and a bad record is refused with its file named."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from linas_lib.config import load_profile
from linas_lib.search import experiment as E
from linas_lib.search import records as R
from linas_lib.search.report import experiment_for
from linas_lib.space import LINAS_SPACE, arch_string
from linas_lib.supernet.train import search_latency_model

REPLICA = Path(__file__).resolve().parents[1] / "results/cpu/replicas/852ff14-genuineintel-family-6-model-207-stepping-2"
RECORD = REPLICA / "records"


@pytest.fixture(scope="module")
def replay():
    profile = load_profile("cpu")
    records = R.load_records(RECORD)
    latency = search_latency_model(profile)
    return records, latency, R.replay_setup(profile, records, latency)


def _per_run_hv() -> dict[tuple[str, int, str], float]:
    with (REPLICA / "05_pareto" / "per_run.csv").open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {(r["method"], int(r["seed"]), r["target"]): float(r["hv"]) for r in rows}


def test_the_record_scores_as_the_replica_did(replay):
    records, latency, setup = replay
    experiment, per_run = experiment_for(setup), _per_run_hv()
    runs = R.recorded_runs(records, latency)
    scored = {(r.method, r.seed, name): experiment.target_hv(r.miou, r.latency_ms, t)
              for r in runs for t, name in enumerate(experiment.target_names)}
    assert len(per_run) == 1100 and set(per_run) <= set(scored)
    assert all(scored[key] == pytest.approx(per_run[key], rel=1e-12, abs=1e-15) for key in per_run)
    folders = {f for f, _, _ in records.runs}
    assert {"", "oracle_300"} <= folders and all(f.startswith("long_") for f in folders - {"", "oracle_300"})
    assert len(R.recorded_runs(records, latency, "oracle_300")[0].miou) == 300


@pytest.mark.parametrize("method,seed", [("random", 0), ("alpha", 1), ("epr", 2), ("zero_cost", 3), ("random_feasible", 4),
                                         ("surrogate_pairs", 10), ("surrogate_fingerprint", 10),
                                         ("surrogate_fingerprint_space", 90)])
def test_a_replayed_run_evaluates_the_recorded_architectures(replay, method, seed):
    """Exact, on any CPU: a difference names this CPU and the step, for the README's cross-machine question."""
    from linas_lib.provenance import machine

    records, _, setup = replay
    row = R.replay_rows(setup, records, 0, keys=[("", method, seed)])[0]
    assert row["identical"] == 1, (f"{method} seed {seed} replayed on {machine()['cpu_id']} first differs at "
                                   f"evaluation {row['first_difference']} from the record made on "
                                   f"{records.meta['provenance']['machine']['cpu_id']}")


def test_a_search_leaving_the_record_is_refused_not_answered(replay):
    records, _, setup = replay
    unseen = next(c for c in range(LINAS_SPACE.size) if c not in records.miou)
    with pytest.raises(R.OracleMiss, match=f"oracle.csv: the recorded oracle never evaluated {arch_string(LINAS_SPACE.decode(unseen))}"):
        setup.accuracy.lookup(LINAS_SPACE, LINAS_SPACE.decode([unseen]))


def test_replay_refuses_another_latency_model(replay):
    records, latency, _ = replay

    class Other:
        target_names, budgets_ms = latency.target_names, np.asarray(latency.budgets_ms) * 2

    with pytest.raises(ValueError, match="records.json: recorded for targets"):
        R.replay_setup(load_profile("cpu"), records, Other())


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "record"
    shutil.copytree(RECORD, folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("name,old,new,message", [
    ("oracle.csv", "code,ws_miou", "code,miou", r"oracle.csv: header \['code', 'miou'\]"),
    ("oracle.csv", "\n", "\n99999999,0.5\n", r"oracle.csv, line 2: '99999999' is not an architecture code"),
    ("oracle.csv", "\n", "\n1,nan\n", r"oracle.csv, line 2: mIoU nan is not in \[0, 1\]"),
    ("oracle.csv", "\n", "\n1,x\n", r"oracle.csv, line 2: mIoU 'x' is not a number"),
    ("runs.csv", ",alpha,0,", ",alpha,zero,", r"runs.csv, line 2: expected folder,method,seed,codes"),
    ("records.json", '"schema": 1', '"schema": 7', r"records.json: not a search record of schema 1"),
])
def test_a_bad_record_is_refused_with_its_file_and_line(tmp_path, name, old, new, message):
    folder = _copy(tmp_path)
    _edit(folder / name, old, new)
    with pytest.raises(ValueError, match=message):
        R.load_records(folder)


def test_a_repeated_or_empty_run_is_refused(tmp_path):
    folder = _copy(tmp_path)
    lines = (folder / "runs.csv").read_text().splitlines()
    (folder / "runs.csv").write_text("\n".join(lines[:2] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"runs.csv, line 3: alpha seed 0 appears twice"):
        R.load_records(folder)
    (folder / "runs.csv").write_text("\n".join(lines[:1] + [",alpha,0,"] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=r"runs.csv, line 2: alpha seed 0 has no evaluations"):
        R.load_records(folder)


def test_a_repeated_code_or_a_run_beyond_the_oracle_is_refused(tmp_path):
    folder = _copy(tmp_path)
    lines = (folder / "oracle.csv").read_text().splitlines()
    (folder / "oracle.csv").write_text("\n".join(lines[:2] + lines[1:2] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=r"oracle.csv, line 3: code \d+ appears twice"):
        R.load_records(folder)
    (folder / "oracle.csv").write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # the first code dropped
    with pytest.raises(ValueError, match=rf"runs.csv, line \d+: \w+ seed \d+ evaluates code {lines[1].split(',')[0]}, "
                                         "which .*oracle.csv lacks"):
        R.load_records(folder)
    (folder / "records.json").unlink()
    with pytest.raises(FileNotFoundError, match="records.json: missing"):
        R.load_records(folder)


def test_export_writes_what_load_reads_and_refuses_a_run_off_the_oracle(tmp_path, replay):
    records, latency, setup = replay
    cache = tmp_path / "cache"
    (cache / "oracle_300").mkdir(parents=True)
    runs = R.recorded_runs(records, latency)[:3] + R.recorded_runs(records, latency, "oracle_300")
    miou = {}
    for run in runs:
        sub = cache / ("oracle_300" if run.n_evals == 300 else "")
        (sub / f"{E.run_key(run.method, run.seed)}.json").write_text(json.dumps(run.to_json()))
        miou.update(zip(np.atleast_1d(LINAS_SPACE.encode(run.choices)).tolist(), run.miou.tolist()))
    (cache / "ws_miou.json").write_text(json.dumps({str(k): v for k, v in miou.items()}))
    source = dict(records.meta["oracle"])
    out = R.export_records(cache, tmp_path / "out", setup, "cpu", records.meta["seed"], source, {"note": "test"})
    again = R.load_records(out)
    assert again.miou == miou and again.meta["oracle"] == source and again.meta["profile"] == "cpu"
    assert again.runs == {k: records.runs[k] for k in again.runs} and len(again.runs) == 4
    assert again.meta["near_table"] == records.meta["near_table"] and again.meta["alpha_probs"] == records.meta["alpha_probs"]
    first = next(iter(miou))
    miou[first] += 0.01
    (cache / "ws_miou.json").write_text(json.dumps({str(k): v for k, v in miou.items()}))
    with pytest.raises(ValueError, match="its mIoU values are not the oracle's"):
        R.export_records(cache, tmp_path / "out2", setup, "cpu", 0, source, {})


def test_replay_refuses_another_profile(replay):
    records, latency, _ = replay
    with pytest.raises(ValueError, match="records.json: recorded with profile 'cpu', replayed with 'smoke'"):
        R.replay_setup(load_profile("smoke"), records, latency)


# ---------------------------------------------------------------- the fingerprint probe (notebook 08)


def test_posterior_mean_weights_give_the_gaussian_process_mean():
    """The mean weights predict ``offset + scale * K* (K + I / beta)^-1 t``, the kernel being the
    count of shared layers and pairs (and the fingerprints' product) scaled by their prior variances."""
    from linas_lib.search import surrogate as S

    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 4, (12, 3)), rng.integers(0, 4, (5, 3))
    z_train, z_test = rng.standard_normal((12, 2)), rng.standard_normal((5, 2))
    post = S.fit_pair_posterior(train, rng.random(12), 4, 0.0, z_train)
    singles, pairs = S.pair_kernels(test, train)
    cross = singles * post.single_var + pairs * post.pair_var + post.fingerprint_var * z_test @ z_train.T
    own_s, own_p = S.pair_kernels(train, train)
    gram = own_s * post.single_var + own_p * post.pair_var + post.fingerprint_var * z_train @ z_train.T
    expected = post.offset + post.scale * cross @ np.linalg.solve(gram + np.eye(12) / post.beta, post.standardised)
    assert post.predict(test, post.mean_weights(), z_test) == pytest.approx(expected, rel=1e-9)


def test_the_step_replay_picks_what_each_run_picked_under_its_own_model(replay):
    from linas_lib.analysis import fingerprint_probe as FP

    records, latency, setup = replay
    runs = {(r.method, r.seed): r for r in R.recorded_runs(records, latency)}
    rows = FP.step_rows(setup, runs, [12], "rtx4090")
    assert len(rows) == 2 * 58 * 3 and {r["model"] for r in rows} == set(FP.STEP_MODELS)
    own = [r["actual"] for r in rows if r["model"] == r["data"]]
    assert len(own) == 116 and all(own)
    t = list(latency.target_names).index("rtx4090")
    for r in rows[:20]:
        assert r["in_box"] == int(latency.predict(LINAS_SPACE.decode([r["code"]]))[0, t] / latency.budgets_ms[t] < 1.0)
    table = FP.step_effects(rows)
    gate = {r["data"]: r["mean"] for r in table if r["quantity"] == "own_model_is_actual"}
    assert gate == {"fingerprint": 1.0, "pairs": 1.0}


def test_a_replay_that_differs_from_the_record_is_refused(replay):
    from linas_lib.analysis import fingerprint_probe as FP

    records, latency, setup = replay
    runs = {(r.method, r.seed): r for r in R.recorded_runs(records, latency)}
    other = runs[("surrogate_pairs", 13)]
    runs[("surrogate_pairs", 12)] = other
    with pytest.raises(ValueError, match="surrogate_pairs seed 12: the replayed run is not the recorded one"):
        FP.step_rows(setup, runs, [12], "rtx4090")


def test_model_effects_are_paired_per_seed_and_arm():
    from linas_lib.analysis import fingerprint_probe as FP

    shift = {"fingerprint": 1.0, "pairs": 2.0}  # the models' difference on each arm's data, the same every seed
    rows = [{"seed": s, "data": d, "k": 5, "model": m, "target": "t", "tau": 0.0,
             "bias_pts": 10.0 * s + (shift[d] if m == "fingerprint" else 0.0)}
            for s in range(4) for d in FP.ARMS for m in FP.ARMS]
    effects = FP.model_effects(rows, "bias_pts")
    assert [(r["data"], r["n"], r["mean"], r["sd"]) for r in effects] == [("fingerprint", 4, 1.0, 0.0), ("pairs", 4, 2.0, 0.0)]


def _csv_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def test_a_study_on_the_record_reads_as_05_read_it(replay):
    """05's reference HV and its confirmatory study's fingerprint effect, recomputed from the record alone."""
    from linas_lib.analysis import fingerprint_probe as FP

    records, latency, setup = replay
    study = FP.cure_study(setup, records, latency, ["surrogate_pairs", "surrogate_fingerprint"], [*range(10, 50), 999], 200)
    experiment = json.loads((REPLICA / "05_pareto" / "experiment.json").read_text())
    assert study["reference_hv"] == experiment["reference_hv"]
    assert study["seeds"] == list(range(10, 50)) and study["missing_seeds"] == [999]
    committed = next(r for r in _csv_rows(REPLICA / "05_pareto" / "confirm_effects.csv")
                     if r["effect"] == "fingerprint" and r["seeds"] == "confirm")
    effect = next(r for r in study["effects"] if r["effect"] == "fingerprint")
    assert effect["diff_mean"] == pytest.approx(float(committed["diff_mean"]), rel=1e-12)
    assert effect["diff_ci95_low"] == pytest.approx(float(committed["diff_ci95_low"]), rel=1e-12)
    figures = FP.cure_figures(study, "confirm")
    assert figures["study.confirm.n_seeds"] == 40 and "study.confirm.contrib.fingerprint.rtx4090_ci95_high" in figures
    assert 0 < figures["study.confirm.one_layer_share.surrogate_pairs"] <= 1
    assert figures["study.confirm.mean_distance.surrogate_fingerprint"] >= 1
    assert FP.cure_figures(FP.cure_study(setup, records, latency, [], [50]), "x") == {}
    none = FP.cure_figures(FP.cure_study(setup, records, latency, ["surrogate_pairs"], [999]), "none")
    assert none["study.none.n_seeds"] == 0 and none["study.none.n_missing_seeds"] == 1


def test_a_study_is_also_read_against_a_best_known_front_without_each_seed(replay):
    """Each seed's front: 05's reference runs and every other run of the record with another seed
    (long runs too); its HV from the runs' front points equals the HV of all their evaluations."""
    from linas_lib.analysis import fingerprint_probe as FP

    records, latency, setup = replay
    methods, seeds = ["surrogate_fingerprint", "surrogate_fingerprint_space"], [90, 91]
    study = FP.cure_study(setup, records, latency, methods, seeds, 200)
    experiment, base, reference = FP.reference_runs(setup, records, latency)
    others = FP.other_runs(records, latency)
    assert {r.seed for r in others} >= {90, 91, 130} and not any(r.seed in range(10) and r.n_evals == 60
                                                               and r.method == "random" for r in others)
    runs = {(r.method, r.seed): r for r in R.recorded_runs(records, latency)}
    rows = {r["method"]: r for r in study["best_known"]}
    fronts = {s: E.reference_hv(experiment, base + [r for r in others if r.seed != s]) for s in seeds}
    for m in methods:
        shares = [experiment.hv(runs[m, s].miou, runs[m, s].latency_ms) / fronts[s] for s in seeds]
        assert rows[m]["share_best_known_mean"] == pytest.approx(np.mean(shares), rel=1e-9)
        assert rows[m]["front_frac_reference"] == pytest.approx(np.mean(list(fronts.values())) / reference, rel=1e-9)
    share = {r["method"]: r["share_mean"] for r in study["methods"]}
    assert all(rows[m]["share_best_known_mean"] < share[m] for m in methods)
    figures = FP.cure_figures(study, "bk")
    assert figures["study.bk.hv_frac_best_known.surrogate_fingerprint"] == rows["surrogate_fingerprint"]["share_best_known_mean"]
    assert "best_known" in FP.study_tables({**study, "kind": "budget"})


def test_a_long_study_reads_long_runs_against_the_reference_and_a_front_without_their_seed(replay):
    """The space study's runs filed as long runs of 60 evaluations: the long reading must give the
    short one's shares and effect, and each seed's best known front must leave that seed out."""
    import dataclasses

    from linas_lib.analysis import fingerprint_probe as FP
    from linas_lib.config import StudyConfig

    records, latency, setup = replay
    methods, seeds = ["surrogate_fingerprint", "surrogate_fingerprint_space"], [90, 91, 92, 93]
    as_long = {("long_60", m, s): records.runs[("", m, s)] for m in methods for s in seeds}
    long_record = dataclasses.replace(records, runs={**records.runs, **as_long})
    study = FP.run_study(setup, long_record, latency, StudyConfig("l", tuple(methods), (*seeds, 999), 60), 200)
    short = FP.cure_study(setup, records, latency, methods, seeds, 200)
    assert study["kind"] == "long" and study["seeds"] == seeds and study["missing_seeds"] == [999]
    shares = {r["method"]: r for r in study["methods"]}
    for row in short["methods"]:
        assert shares[row["method"]]["share_reference_mean"] == pytest.approx(row["share_mean"], rel=1e-12)
        assert shares[row["method"]]["share_best_known_mean"] < row["share_mean"]
    effect = next(r for r in study["effects"] if r["effect"] == "whole_space")
    assert effect["n_evals"] == 60 and effect["mean"] == pytest.approx(
        next(r for r in short["effects"] if r["effect"] == "whole_space")["diff_mean"], rel=1e-9)
    front = {r["front"]: r["frac_reference"] for r in study["front"]}
    assert 1 <= front["with_other_long_runs"] <= front["held_out_mean"] < front["with_every_run"]
    # with two seeds, each run's share of its front recomputed: the reference's runs and the other seed's runs
    experiment, base, _ = FP.reference_runs(setup, records, latency)
    two = dataclasses.replace(records, runs={**records.runs, **{k: v for k, v in as_long.items() if k[2] in (90, 91)}})
    rows = {r["method"]: r for r in FP.run_study(setup, two, latency, StudyConfig("two", tuple(methods), (90, 91), 60),
                                                  200)["methods"]}
    runs = {(r.method, r.seed): r for r in R.recorded_runs(two, latency, "long_60")}
    for m in methods:
        shares = [experiment.hv(runs[m, s].miou, runs[m, s].latency_ms)
                  / E.reference_hv(experiment, base + [runs[x, other] for x in methods]) for s, other in ((90, 91), (91, 90))]
        assert rows[m]["share_best_known_mean"] == pytest.approx(np.mean(shares), rel=1e-12)
    figures = FP.study_figures(study, "l")
    assert figures["study.l.n_seeds"] == 4 and "study.l.effect.whole_space.60_ci95_low" in figures
    assert set(FP.study_tables(study)) == {"methods", "effects", "by_target", "locality", "front"}
    assert FP.run_study(setup, records, latency, StudyConfig("none", tuple(methods), (999,), 60))["seeds"] == []
    assert "study.l.contrib.whole_space.rtx4090_ci95_low" in figures and "study.l.one_layer_share.surrogate_fingerprint" in figures
    # runs of a method outside the study, on its seeds, join none of its fronts
    extra = {("long_60", "surrogate_pairs", s): records.runs[("", "surrogate_pairs", s - 40)] for s in seeds}
    widened = dataclasses.replace(long_record, runs={**long_record.runs, **extra})
    same = FP.study_figures(FP.run_study(setup, widened, latency, StudyConfig("l", tuple(methods), (*seeds, 999), 60),
                                         200), "l")
    assert json.dumps(same, sort_keys=True, default=float) == json.dumps(figures, sort_keys=True, default=float)
    # a study's control adds each other method's effect against it: here the same pair as whole_space
    spec = StudyConfig("c", tuple(methods), tuple(seeds), 60, control="surrogate_fingerprint")
    vs = {r["effect"]: r for r in FP.run_study(setup, long_record, latency, spec, 200)["effects"]}
    assert vs["surrogate_fingerprint_space_vs_surrogate_fingerprint"]["mean"] == vs["whole_space"]["mean"] == effect["mean"]
    # runs of one length: the control's end against the method's 60th is the negated effect at 60
    with_control = FP.run_study(setup, long_record, latency, spec, 200)
    assert [r["method"] for r in with_control["equivalence"]] == ["surrogate_fingerprint_space"]
    assert with_control["equivalence"][0]["mean"] == pytest.approx(-effect["mean"], rel=1e-12)
    assert "study.c.equivalence.surrogate_fingerprint_space_ci95_low" in FP.study_figures(with_control, "c")
    cut = dataclasses.replace(records, runs={**records.runs, **{k: v[:59] if k[2] == 91 else v for k, v in as_long.items()}})
    with pytest.raises(ValueError, match=r"long_60 holds runs of another length \(surrogate_fingerprint seed 91: 59"):
        FP.run_study(setup, cut, latency, StudyConfig("cut", tuple(methods), tuple(seeds), 60))


def test_budget_equivalence_sets_the_controls_end_against_the_methods_budget():
    from linas_lib.analysis.fingerprint_probe import budget_equivalence

    curves = {("rand", 1): np.array([0.1, 0.2, 0.5, 0.9]), ("model", 1): np.array([0.3, 0.6, 0.7, 1.0]),
              ("rand", 2): np.array([0.1, 0.2, 0.3, 0.4]), ("model", 2): np.array([0.2, 0.5, 0.8, 0.9])}
    (row,) = budget_equivalence(curves, "rand", budget=2, reference=2.0, n_resamples=200)
    assert row["method"] == "model" and row["method_evals"] == 2 and row["control_evals"] == 4
    assert row["mean"] == pytest.approx(((0.9 - 0.6) + (0.4 - 0.5)) / 2 / 2.0)
    assert row["reached_share"] == 0.5 and row["n"] == 2


def test_pick_locality_measures_each_pick_against_what_its_run_had_evaluated_before():
    from linas_lib.analysis.fingerprint_probe import pick_locality

    class Run:
        def __init__(self, method, seed, choices):
            self.method, self.seed, self.choices = method, seed, np.array(choices)

    near = Run("a", 0, [[0, 0, 0], [1, 1, 1], [0, 0, 1], [2, 2, 2]])  # picks: 1 layer from [0,0,0]; 3 from all
    far = Run("a", 1, [[0, 0, 0], [1, 1, 1], [1, 1, 2], [2, 2, 2]])  # picks: 1 and 2; [2,2,2] also near's
    other = Run("b", 0, [[1, 1, 2], [0, 0, 1], [0, 0, 1], [1, 1, 2]])  # another method: not a seed of a's
    rows = {r["quantity"]: r for r in pick_locality([near, far, other], n_init=2) if r["method"] == "a"}
    assert rows["one_layer_share"]["mean"] == pytest.approx(0.5) and rows["one_layer_share"]["n"] == 2
    assert rows["mean_distance"]["mean"] == pytest.approx((2 + 1.5) / 2)
    assert rows["cross_seed_share"]["mean"] == pytest.approx(0.5)  # one of each run's two picks is the other's


def test_a_misspelt_study_method_or_probe_target_is_refused_before_the_record_is_read(tmp_path):
    import dataclasses

    from linas_lib.config import StudyConfig, load_profile

    profile = load_profile("smoke")
    bad = dataclasses.replace(profile, records=dataclasses.replace(
        profile.records, path=str(tmp_path / "absent"), studies=(StudyConfig("x", ("surrogate_fingerprnt",), (1,)),)))
    with pytest.raises(ValueError, match=r"records.studies\[x\].methods: unknown search method 'surrogate_fingerprnt'"):
        R.open_record(bad)


def test_a_study_control_must_be_one_of_its_methods_beside_another():
    from linas_lib.config import StudyConfig

    with pytest.raises(ValueError, match="control must be empty, or one of methods beside at least one other, got 'random'"):
        StudyConfig("x", ("surrogate_fingerprint", "random_feasible"), (1,), control="random")
    with pytest.raises(ValueError, match="control must be empty, or one of methods"):
        StudyConfig("x", ("random_feasible",), (1,), control="random_feasible")
    spec = StudyConfig("x", ("random_feasible", "surrogate_pairs"), (1,), control="random_feasible")
    assert spec.effects((("a", "b", "c"),)) == (("a", "b", "c"),
                                                ("surrogate_pairs_vs_random_feasible", "surrogate_pairs", "random_feasible"))


def test_a_long_study_at_the_protocol_budget_is_refused_when_the_record_opens():
    import dataclasses

    from linas_lib.config import StudyConfig

    profile = load_profile("cpu")
    bad = dataclasses.replace(profile, records=dataclasses.replace(
        profile.records, studies=(StudyConfig("x", ("surrogate_fingerprint",), (1,), profile.search.eval_budget),)))
    with pytest.raises(ValueError, match=r"records.studies\[x\].evals = 60: long runs need more than search.eval_budget"):
        R.open_record(bad)


def test_replay_keys_cap_the_costly_methods_and_keep_the_record_order():
    class Fake:
        runs = {(f, m, s): [] for f, m, s in [("", "a", 1), ("", "b", 3), ("", "b", 1), ("", "b", 2), ("x", "b", 1)]}

    assert R.replay_keys(Fake()) == sorted(Fake.runs)
    assert R.replay_keys(Fake(), capped=("b",), cap=1) == [("", "a", 1), ("", "b", 1), ("x", "b", 1)]
    assert R.replay_keys(Fake(), n_runs=2) == [("", "a", 1), ("", "b", 1)]


def test_replay_keys_cap_long_runs_per_method_and_folder():
    class Fake:
        runs = {(f, m, s): [] for f, m, s in [("", "a", 1), ("", "a", 2), ("long_300", "a", 5), ("long_300", "a", 4),
                                               ("long_300", "b", 4), ("oracle_300", "epr", 9)]}

    assert R.replay_keys(Fake(), long_cap=1) == [("", "a", 1), ("", "a", 2), ("long_300", "a", 4),
                                                  ("long_300", "b", 4), ("oracle_300", "epr", 9)]
    assert R.replay_keys(Fake(), long_cap=0) == [("", "a", 1), ("", "a", 2), ("oracle_300", "epr", 9)]
    assert R.replay_keys(Fake(), capped=("a",), cap=1, long_cap=2) == [
        ("", "a", 1), ("long_300", "a", 4), ("long_300", "b", 4), ("oracle_300", "epr", 9)]


def test_committed_match_tells_the_record_of_05s_oracle_from_another_oracles(replay, tmp_path):
    """The record scores its own 05's files to every digit, not the committed 05's (another CPU's
    training of the supernet); a file without its columns is refused by name."""
    records, latency, setup = replay
    own = R.committed_match(records, latency, setup, REPLICA / "05_pareto")
    assert own == {"per_run_cells": 1100.0, "per_run_equal": 1100.0, "per_run_max_abs_diff": 0.0, "curve_cells": 6600.0,
                   "curve_equal": 6600.0, "curve_max_abs_diff": 0.0, "reference_hv_equal": 1.0, "oracle_hv_equal": 1.0}
    other = R.committed_match(records, latency, setup, Path(__file__).resolve().parents[1] / "results/cpu/05_pareto")
    assert other["per_run_cells"] == 1100 and other["per_run_equal"] < 1100 and other["curve_equal"] < 6600
    assert other["reference_hv_equal"] == 0 and other["oracle_hv_equal"] == 0 and other["per_run_max_abs_diff"] > 0
    for name in ("per_run.csv", "hv_curves.csv", "experiment.json"):
        shutil.copy(REPLICA / "05_pareto" / name, tmp_path / name)
    (tmp_path / "hv_curves.csv").write_text("# provenance: {}\nmethod,seed,hv\nrandom,0,0.1\n")
    with pytest.raises(ValueError, match=r"hv_curves.csv: no rows, or missing column\(s\) n_evals"):
        R.committed_match(records, latency, setup, tmp_path)
    (tmp_path / "hv_curves.csv").write_text("# provenance: {}\nmethod,seed,n_evals,hv\nrandom,0,1,x\n")
    with pytest.raises(ValueError, match=r"hv_curves.csv, line 3: seed, n_evals or hv is not a number"):
        R.committed_match(records, latency, setup, tmp_path)
    shutil.copy(REPLICA / "05_pareto" / "hv_curves.csv", tmp_path / "hv_curves.csv")
    (tmp_path / "per_run.csv").write_text("method,seed,target,hv\nrandom,0,tpu,0.1\n")
    with pytest.raises(ValueError, match=r"per_run.csv, line 2: target 'tpu' is not one of the record's"):
        R.committed_match(records, latency, setup, tmp_path)
    shutil.copy(REPLICA / "05_pareto" / "per_run.csv", tmp_path / "per_run.csv")
    (tmp_path / "experiment.json").write_text("{")
    with pytest.raises(ValueError, match=r"experiment.json: not JSON"):
        R.committed_match(records, latency, setup, tmp_path)


def test_a_study_on_a_record_of_its_own_opens_that_record_once():
    import dataclasses

    from linas_lib.config import StudyConfig

    profile = load_profile("cpu")
    own = str(RECORD)  # the main record by another spelling: opened as a record of its own
    studies = (StudyConfig("a", ("surrogate_fingerprint",), (1,)), StudyConfig("b", ("surrogate_fingerprint",), (2,), record=own),
               StudyConfig("c", ("surrogate_pairs",), (3,), record=own))
    profile = dataclasses.replace(profile, records=dataclasses.replace(profile.records, studies=studies))
    main = ("main record", "main setup", "main latency")
    opened = R.study_records(profile, main)
    assert opened["a"] is main and opened["b"] is opened["c"] and opened["b"][0].folder == RECORD
    same = StudyConfig("d", ("surrogate_pairs",), (4,), record=profile.records.path)  # the main record: not opened again
    assert R.study_records(dataclasses.replace(profile, records=dataclasses.replace(profile.records, studies=(same,))),
                           main)["d"] is main
    with pytest.raises(FileNotFoundError):
        R.study_records(dataclasses.replace(profile, records=dataclasses.replace(
            profile.records, studies=(StudyConfig("d", ("surrogate_pairs",), (3,), record="results/cpu/absent"),))), main)


def test_between_studies_is_welchs_interval_of_the_two_seed_sets():
    """The shared effects' difference with the CI scipy's Welch t-test gives on the raw seed values."""
    from scipy.stats import ttest_ind

    from linas_lib.analysis import fingerprint_probe as FP

    a, b = np.array([0.09, 0.07, 0.11, 0.08, 0.10]), np.array([0.05, 0.09, 0.02, 0.08, 0.06, 0.07, 0.04])
    row = lambda v, effect="mean_vs_draws": {"effect": effect, "n_seeds": v.size, "diff_mean": v.mean(),  # noqa: E731
                                             "diff_sd": v.std(ddof=1)}
    rows = FP.between_studies({"effects": [row(a), row(a, "only_here")]}, {"effects": [row(b)]})
    expected = ttest_ind(a, b, equal_var=False).confidence_interval()
    assert [r["effect"] for r in rows] == ["mean_vs_draws"]
    assert rows[0]["diff_mean"] == pytest.approx(a.mean() - b.mean())
    assert (rows[0]["diff_ci95_low"], rows[0]["diff_ci95_high"]) == pytest.approx((expected.low, expected.high))
    figures = FP.study_figures({"kind": "budget", "reference_hv": 1.0, "seeds": [1], "missing_seeds": [],
                                "methods": [], "effects": [], "between": rows}, "x")
    assert figures["study.x.between.mean_vs_draws_ci95_low"] == rows[0]["diff_ci95_low"]


def test_a_study_replicates_only_another_study_of_the_profile():
    from linas_lib.config import RecordsConfig, StudyConfig

    with pytest.raises(ValueError, match="a replicates that names another of the studies"):
        RecordsConfig(studies=(StudyConfig("a", ("surrogate_pairs",), (1,), replicates="b"),))
    RecordsConfig(studies=(StudyConfig("a", ("surrogate_pairs",), (1,)),
                           StudyConfig("b", ("surrogate_pairs",), (2,), replicates="a")))


def test_run_studies_reads_a_study_on_its_own_record_with_its_checks(replay):
    """A study naming a record: read on it, checked against the committed 05 (another oracle here:
    nothing equal), its first seeds replayed, and its difference to the study it replicates."""
    import dataclasses

    from linas_lib.analysis import fingerprint_probe as FP
    from linas_lib.config import StudyConfig

    profile = load_profile("cpu")
    own = str(RECORD.relative_to(RECORD.parents[4]))
    methods = ("surrogate_pairs", "surrogate_fingerprint")
    studies = (StudyConfig("first", methods, (10, 11, 12)), StudyConfig("again", methods, (13, 14, 15), record=own, replicates="first"))
    profile = dataclasses.replace(profile, records=dataclasses.replace(profile.records, studies=studies, replay_cap=1))
    records, latency, setup = replay
    out = FP.run_studies(profile, (records, setup, latency), 100)
    again = FP.study_figures(out["again"], "again")
    assert "committed_05" not in out["first"] and "replay" not in out["first"]
    assert again["study.again.committed_05.per_run_equal"] == 0 and again["study.again.committed_05.per_run_cells"] == 1100
    assert again["study.again.replay.n_runs"] == 2 and again["study.again.replay.n_identical"] == 2
    assert [(r["method"], r["seed"]) for r in out["again"]["replay"]] == [("surrogate_pairs", 13), ("surrogate_fingerprint", 13)]
    assert "study.again.between.fingerprint_ci95_low" in again
