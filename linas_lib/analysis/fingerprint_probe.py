"""Why the latency fingerprint looks less in rtx4090's box: a probe of its model (exploratory).

05's confirmatory study found ``surrogate_fingerprint`` ahead of ``surrogate_pairs`` overall but
behind on rtx4090, where it places fewer evaluations and finds less
(:func:`linas_lib.search.experiment.matched_count_split`). On a search record
(:mod:`linas_lib.search.records`), two measurements of what the two models do there:

* :func:`step_rows`, the step replay: every Thompson step of both arms' runs made again, and at
  each step three acquisitions on the same state and random numbers (the pairs model, the
  fingerprint model, the fingerprint model's mean with the pairs draw's spread); where each pick
  lies says whether the model or the run's state steers the search away from a target's box;
* :func:`probe_rows`, the prediction difference: both models refitted on each run's first ``k``
  evaluations predict every headline target's best recorded architectures (:func:`top_in_box`),
  against the oracle's values: a level (mean of predicted minus true, mIoU points) and a ranking
  (Kendall tau within the set); and :func:`fingerprint_weights`.
"""

from __future__ import annotations

import copy

import numpy as np

from ..search.experiment import ParetoExperiment, method_rng
from ..search.fidelity import kendall_tau
from ..search.indicators import inside_reference
from ..search.methods import run_method, surrogate_pool
from ..search.records import committed_match, recorded_runs, study_records
from ..search.report import experiment_for
from ..search.surrogate import MIN_SCALE, LatencyFingerprint, fit_pair_posterior, hv_gain
from ..space import LINAS_SPACE
from ..stats import mean_t_ci

ARMS = {"fingerprint": "surrogate_fingerprint", "pairs": "surrogate_pairs"}  # model -> the method that fits it
PROBE_EVALS = (15, 30, 45)
PROBE_TOP = 100


def run_fingerprint(setup, seed: int) -> LatencyFingerprint:
    """The latency fingerprint's standardisation in both arms' runs of ``seed``: over the first
    candidate pool, which both draw first from the stream they share."""
    return LatencyFingerprint.of_pool(setup.latency.predict(surrogate_pool(setup, method_rng(ARMS["pairs"], seed))))


def top_in_box(experiment: ParetoExperiment, choices, miou, latency_ms, n: int = PROBE_TOP) -> dict[int, np.ndarray]:
    """Per headline target, the indices of the ``n`` architectures with the highest mIoU inside
    its HV box (within the budget, above the reference accuracy)."""
    tops = {}
    for t in experiment.hv_targets:
        inside = np.flatnonzero(inside_reference(experiment.objectives(miou, latency_ms, int(t)), experiment.ref))
        tops[int(t)] = inside[np.argsort(-miou[inside], kind="stable")[:n]]
    return tops


def fit_mean(choices, miou, n_choices: int, fingerprint=None):
    """``predict(choices, fingerprints) -> mIoU``: the posterior mean of the model the method fits
    (pairs; with ``fingerprint`` ``(n, T)`` the latency fingerprint part too)."""
    post = fit_pair_posterior(choices, miou, n_choices, MIN_SCALE, fingerprint)
    weights = post.mean_weights()
    return lambda archs, fingers=None: post.predict(archs, weights, fingers)


def probe_rows(setup, experiment: ParetoExperiment, runs: dict[tuple[str, int], object], seeds,
               probe: tuple[np.ndarray, np.ndarray, np.ndarray], evals=PROBE_EVALS, n_top: int = PROBE_TOP) -> list[dict]:
    """One row per (seed, data, k, model, target): ``bias_pts`` and ``tau`` on the target's top
    architectures of ``probe`` ``(choices, miou, latency_ms)``; ``data`` names the arm whose run
    gave the ``k`` evaluations; ``in_box_k`` how many of them lie inside the target's box."""
    choices, miou, latency_ms = probe
    tops = top_in_box(experiment, choices, miou, latency_ms, n_top)
    rows = []
    for seed in seeds:
        fingerprint = run_fingerprint(setup, seed)
        probe_fingers = fingerprint(latency_ms)
        for data, method in ARMS.items():
            run = runs[(method, int(seed))]
            for k in evals:
                seen = run.choices[:k], run.miou[:k], run.latency_ms[:k]
                models = {"fingerprint": fit_mean(seen[0], seen[1], setup.space.n_choices, fingerprint(seen[2])),
                          "pairs": fit_mean(seen[0], seen[1], setup.space.n_choices)}
                for model, predict in models.items():
                    predicted = predict(choices, probe_fingers if model == "fingerprint" else None)
                    for t, top in tops.items():
                        in_box = inside_reference(experiment.objectives(seen[1], seen[2], t), experiment.ref)
                        rows.append({"seed": int(seed), "data": data, "k": int(k), "model": model,
                                     "target": experiment.target_names[t], "n_top": len(top),
                                     "bias_pts": 100 * float(np.mean(predicted[top] - miou[top])),
                                     "tau": kendall_tau(predicted[top], miou[top]), "in_box_k": int(in_box.sum())})
    return rows


def fingerprint_weights(setup, runs, seeds, evals=PROBE_EVALS) -> list[dict]:
    """The fingerprint model's posterior-mean weight on each target's standardised log latency,
    fitted on its own run's first ``k`` evaluations: one row per (seed, k, target)."""
    rows = []
    for seed in seeds:
        fingerprint = run_fingerprint(setup, seed)
        run = runs[(ARMS["fingerprint"], int(seed))]
        for k in evals:
            post = fit_pair_posterior(run.choices[:k], run.miou[:k], setup.space.n_choices, MIN_SCALE,
                                      fingerprint(run.latency_ms[:k]))
            weights = post.mean_weights()[2] * post.scale * 100  # mIoU points per SD of log latency
            rows += [{"seed": int(seed), "k": int(k), "target": name, "weight_pts": float(w)}
                     for name, w in zip(setup.latency.target_names, weights)]
    return rows


def _paired_row(values, n_resamples: int, **keys) -> dict:
    """:func:`_ci_row` with the percentile bootstrap's ends beside the t CI (``boot_ci95_low/high``)."""
    from ..stats import mean_ci

    low, high = mean_ci(values, n_resamples)
    return {**_ci_row(values, **keys), "boot_ci95_low": low, "boot_ci95_high": high}


def _ci_row(values, **keys) -> dict:
    low, high = mean_t_ci(values)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return {**keys, "n": len(values), "mean": float(np.mean(values)), "sd": sd, "ci95_low": low, "ci95_high": high}


def model_effects(rows: list[dict], metric: str) -> list[dict]:
    """Per (data, k, target): the fingerprint model minus the pairs model on ``metric``
    (``bias_pts``: on one set, the difference of their predictions; or ``tau``), each arm's data
    apart, with t 95 % CIs over the seeds."""
    value = {(r["seed"], r["data"], r["k"], r["model"], r["target"]): r[metric] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    return [_ci_row([value[s, d, k, "fingerprint", t] - value[s, d, k, "pairs", t] for s in seeds],
                    metric=metric, data=d, k=k, target=t)
            for d in ARMS for k in sorted({r["k"] for r in rows}) for t in targets]


STEP_MODELS = ("pairs", "fingerprint_mean", "fingerprint")


def step_rows(setup, runs: dict[tuple[str, int], object], seeds, target: str) -> list[dict]:
    """Every Thompson step of both arms' runs replayed, with the pick each model would make there.

    At each step of a run (its archive, candidate pool, open candidates and generator states,
    :class:`~linas_lib.search.surrogate.StepState`), three acquisitions on the same state and the
    same random numbers: ``pairs`` (the pairs model's draw), ``fingerprint`` (the fingerprint
    model's draw; in the fingerprint arm's runs its fingerprint weights draw from the run's own
    stream, in the pairs arm's from the same stream spawned afresh, one draw per step) and
    ``fingerprint_mean`` (the fingerprint model's posterior mean plus the pairs draw's deviation
    from its own mean: the fingerprint's mean without the spread of its draws). The run itself
    goes on as recorded.

    Returns:
        One row per (seed, data, step, model): the pick's ``code``, ``in_box`` (1 when it lies on
        the inside of ``target``'s HV box on the latency side, as 05 counts it: latency / budget
        below the reference), ``gain`` (its predicted headline HV gain), ``target_gain_share``
        (the part of it on ``target``), ``actual`` (1 when the pick is the run's next evaluation).

    Raises:
        ValueError: an unknown target, a replayed run that is not the recorded one, or a step where
            a run's own model does not pick its recorded next evaluation (the replay's gate).
    """
    names = list(setup.latency.target_names)
    if target not in names:
        raise ValueError(f"records.probe_target {target!r} is not a target of the record ({names})")
    t = names.index(target)
    targets = np.arange(len(names)) if setup.joint_targets is None else setup.joint_targets
    rows = []
    for seed in seeds:
        fingerprint = run_fingerprint(setup, seed)
        for data, method in ARMS.items():
            spare_fingers = method_rng(ARMS["fingerprint"], seed).spawn(2)[0]  # a fingerprint run's weight stream
            steps = []

            def observe(state):
                fingers = state.finger_rng if state.finger_rng is not None else spare_fingers
                steps.append((state.archive.n_evals, _picks(state, setup, fingerprint, fingers, targets, t)))

            archive, _ = run_method(setup, method, method_rng(method, seed), observe=observe)
            made = np.atleast_1d(setup.space.encode(archive.choices())).tolist()
            if made != np.atleast_1d(setup.space.encode(runs[(method, int(seed))].choices)).tolist():
                raise ValueError(f"{method} seed {seed}: the replayed run is not the recorded one")
            for n, picks in steps:
                if picks[data][0] != made[n]:
                    raise ValueError(f"{method} seed {seed}, step {n}: its own model does not pick the recorded "
                                     "next evaluation, so the step replay does not reproduce the run")
                rows += [{"seed": int(seed), "data": data, "step": n, "model": model, "code": code,
                          "in_box": in_box, "gain": gain, "target_gain_share": share, "actual": int(code == made[n])}
                         for model, (code, in_box, gain, share) in picks.items()]
    return rows


def _picks(state, setup, fingerprint, finger_rng, targets, t: int) -> dict[str, tuple]:
    """``{model: (code, in target t's box on the latency side (1/0), gain, target t's share of the
    gain)}`` of the three acquisitions at ``state``."""
    archive, archs, C = state.archive, state.archs, setup.space.n_choices
    post_p = fit_pair_posterior(archive.choices(), archive.miou(), C, MIN_SCALE)
    post_f = fit_pair_posterior(archive.choices(), archive.miou(), C, MIN_SCALE, fingerprint(archive.latency_ms()))
    fingers = fingerprint(state.latency_ms)
    rng_p, rng_f = copy.deepcopy(state.rng), copy.deepcopy(state.rng)
    pred_p = post_p.predict(archs, post_p.sample(rng_p))
    rng_m = copy.deepcopy(rng_p)
    pred_f = post_f.predict(archs, post_f.sample(rng_f, finger_rng), fingers)
    pred_m = (post_f.predict(archs, post_f.mean_weights(), fingers) + pred_p
              - post_p.predict(archs, post_p.mean_weights()))
    out = {}
    for model, pred, tie in (("pairs", pred_p, rng_p), ("fingerprint_mean", pred_m, rng_m), ("fingerprint", pred_f, rng_f)):
        gain = hv_gain(pred, state.latency_ms, archive, targets, setup.hv_ref)
        gain[~state.open] = -np.inf
        pick = int(tie.choice(np.flatnonzero(gain == gain.max())))
        on_target = hv_gain(pred[[pick]], state.latency_ms[[pick]], archive, [t], setup.hv_ref)[0]
        inside = state.latency_ms[pick, t] / archive.latency.budgets_ms[t] < setup.hv_ref[1]
        out[model] = (int(setup.space.encode(archs[pick])), int(inside), float(gain[pick]),
                      float(on_target / gain[pick]) if gain[pick] > 0 else float("nan"))
    return out


def probe(setup, records, latency, cfg) -> dict:
    """The probe on a record's runs of both arms (every seed that has both; the step replay on the
    first ``cfg.probe_seeds`` of them, 0: all).

    Args:
        setup: :func:`~linas_lib.search.records.replay_setup` of the record.
        records: the record.
        latency: the record's latency model.
        cfg: the profile's ``records`` section.

    Returns:
        ``{seeds, rows, effects, weights, steps, step_seeds, step_effects}``: :func:`probe_rows`,
        their :func:`model_effects` (``bias_pts`` and ``tau``), :func:`fingerprint_weights`,
        :func:`step_rows` on ``cfg.probe_target`` and their :func:`step_effects`.

    Raises:
        ValueError: no seed with runs of both arms, ``probe_evals`` beyond the runs' length, an
            unknown ``probe_target``, or a replay that does not reproduce the record.
    """
    runs = {(r.method, r.seed): r for r in recorded_runs(records, latency)}
    seeds = sorted({s for m, s in runs if m == ARMS["fingerprint"]} & {s for m, s in runs if m == ARMS["pairs"]})
    if not seeds:
        raise ValueError(f"{records.folder}: no seed has runs of both {sorted(ARMS.values())}")
    shortest = min(len(runs[(m, s)].miou) for m in ARMS.values() for s in seeds)
    if max(cfg.probe_evals) > shortest:
        raise ValueError(f"records.probe_evals {list(cfg.probe_evals)}: the record's runs in {records.folder} "
                         f"have {shortest} evaluations")
    codes = np.array(sorted(records.miou))
    choices = LINAS_SPACE.decode(codes)
    probe_set = choices, np.array([records.miou[c] for c in codes.tolist()]), np.asarray(latency.predict(choices))
    rows = probe_rows(setup, experiment_for(setup), runs, seeds, probe_set, cfg.probe_evals, cfg.probe_top)
    step_seeds = seeds[: cfg.probe_seeds or None]
    steps = step_rows(setup, runs, step_seeds, cfg.probe_target)
    return {"seeds": seeds, "rows": rows, "effects": model_effects(rows, "bias_pts") + model_effects(rows, "tau"),
            "weights": fingerprint_weights(setup, runs, seeds, cfg.probe_evals), "step_seeds": step_seeds,
            "steps": steps, "step_effects": step_effects(steps)}


def probe_figures(result: dict) -> dict[str, float]:
    """Summary figures (``<a>``: the arm whose runs gave the data or the states):
    ``probe.n_seeds``; ``probe.<metric>_diff.<a>.<target>.k<k>`` with ``_ci95_low/high``
    (fingerprint minus pairs model; ``<metric>`` ``bias_pts`` or ``tau``);
    ``probe.fingerprint_weight_pts.<target>.k<k>`` (mean over seeds); ``steps.n_seeds``,
    ``steps.<quantity>.<a>.<model>`` and ``steps.<quantity>_diff.<a>.<contrast>`` with
    ``_ci95_low/high`` (:func:`step_effects`), ``steps.own_model_is_actual.<a>``."""
    out = {"probe.n_seeds": float(len(result["seeds"])), "steps.n_seeds": float(len(result["step_seeds"]))}
    for r in result["effects"]:
        out.update(_with_ci(f"probe.{r['metric']}_diff.{r['data']}.{r['target']}.k{r['k']}", r))
    weights: dict[tuple[str, int], list[float]] = {}
    for r in result["weights"]:
        weights.setdefault((r["target"], r["k"]), []).append(r["weight_pts"])
    out.update({f"probe.fingerprint_weight_pts.{t}.k{k}": float(np.mean(v)) for (t, k), v in weights.items()})
    for r in result["step_effects"]:
        if r["quantity"] == "own_model_is_actual":
            out[f"steps.own_model_is_actual.{r['data']}"] = r["mean"]
        elif "_minus_" in r["model"]:
            out.update(_with_ci(f"steps.{r['quantity']}_diff.{r['data']}.{r['model']}", r))
        else:
            out[f"steps.{r['quantity']}.{r['data']}.{r['model']}"] = r["mean"]
    return out


def _with_ci(key: str, row: dict, name: str = "") -> dict[str, float]:
    """``key`` and its ``_ci95_low/high`` from ``row``'s ``mean``/``ci95_*`` (or ``<name>_mean``/``<name>_ci95_*``)."""
    prefix = f"{name}_" if name else ""
    return {key: row[f"{prefix}mean"], f"{key}_ci95_low": row[f"{prefix}ci95_low"],
            f"{key}_ci95_high": row[f"{prefix}ci95_high"]}


STEP_CONTRASTS = (("pairs", "fingerprint"), ("pairs", "fingerprint_mean"), ("fingerprint_mean", "fingerprint"))


def step_effects(rows: list[dict]) -> list[dict]:
    """Per arm's runs (``data``): each model's share of steps whose pick lies in the target's box
    (``quantity`` ``in_box``) and its mean target share of the pick's gain (``target_gain_share``),
    and the paired differences :data:`STEP_CONTRASTS` (``model`` ``<a>_minus_<b>``), per seed
    over the run's steps, with t 95 % CIs over the seeds; ``own_model_is_actual`` checks the replay
    (the share of steps where the run's own model picks the recorded next evaluation)."""
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for data in ARMS:
        mine = [r for r in rows if r["data"] == data]
        for quantity in ("in_box", "target_gain_share"):
            per = {(s, m): np.nanmean([r[quantity] for r in mine if r["seed"] == s and r["model"] == m])
                   for s in seeds for m in STEP_MODELS}
            out += [_ci_row([per[s, m] for s in seeds], data=data, quantity=quantity, model=m) for m in STEP_MODELS]
            out += [_ci_row([per[s, a] - per[s, b] for s in seeds], data=data, quantity=quantity, model=f"{a}_minus_{b}")
                    for a, b in STEP_CONTRASTS]
        own = [r["actual"] for r in mine if r["model"] == data]
        out.append({"data": data, "quantity": "own_model_is_actual", "model": data, "n": len(own),
                    "mean": float(np.mean(own))})
    return out


def cure_study(setup, records, latency, methods, seeds, n_resamples: int = 2000, effects=()) -> dict:
    """A study on the record's runs of ``methods`` on ``seeds`` (those seeds with every method's
    run), read by 05's :func:`~linas_lib.search.experiment.confirm_study` against 05's fixed
    reference of the record's oracle: the HV of the compared runs (the record's profile's
    ``search.methods`` x ``search.seeds``) and the oracle's long run (``oracle_<n>``); ``effects``
    as ``confirm_study``'s.

    Returns:
        ``{reference_hv, seeds, missing_seeds, methods, effects, by_target, locality}`` (empty
        without methods); ``locality``: :func:`pick_locality` per method; with runs,
        ``best_known``: per method its share of each seed's best known front without that seed
        (05's reference runs and every other run of the record, long runs included:
        :func:`held_out_best_known`), a sterner reading than the reference, which holds none of
        the study's points.

    Raises:
        ValueError: the record lacks one of the compared runs, or the oracle's run.
    """
    from ..search.experiment import confirm_study

    if not methods or not seeds:
        return {}
    experiment, base, reference = reference_runs(setup, records, latency)
    runs = {(r.method, r.seed): r for r in recorded_runs(records, latency)}
    complete = [s for s in seeds if all((m, int(s)) in runs for m in methods)]
    chosen = [runs[(m, int(s))] for s in complete for m in methods]
    study = confirm_study(experiment, chosen, reference, n_resamples, effects)
    out = {"reference_hv": reference, "seeds": complete, "missing_seeds": [s for s in seeds if s not in complete],
           "methods": [], "effects": [], "by_target": [], **study,
           "locality": pick_locality(chosen, setup.surrogate_init) if complete else []}
    if complete:
        fronts = held_out_best_known(experiment, base, other_runs(records, latency), complete)
        out["best_known"] = _best_known_rows(experiment, chosen, fronts, reference)
    return out


def other_runs(records, latency) -> list:
    """Every run of the record outside 05's reference (:func:`reference_runs`): the studies' runs
    of every folder, long runs included."""
    from ..config import load_profile

    made_with = load_profile(records.meta["profile"]).search
    compared = {(m, s) for m in made_with.methods for s in made_with.seeds}
    folders = dict.fromkeys(folder for folder, _, _ in records.runs if not folder.startswith("oracle_"))
    return [r for folder in folders for r in recorded_runs(records, latency, folder)
            if folder or (r.method, r.seed) not in compared]


def front_points(experiment, runs) -> tuple[np.ndarray, np.ndarray]:
    """``(miou, latency_ms)`` of the runs' evaluations that lie on some HV target's front inside
    the reference box: the rest add no HV to any union they join."""
    from ..search.experiment import union
    from ..search.indicators import nondominated

    _, miou, lat = union(runs)
    keep = np.zeros(len(miou), dtype=bool)
    for t in experiment.hv_targets:
        F = experiment.objectives(miou, lat, t)
        inside = np.flatnonzero(inside_reference(F, experiment.ref))
        if len(inside):
            keep[inside[nondominated(F[inside])]] = True
    return miou[keep], lat[keep]


def held_out_best_known(experiment, base, others, seeds) -> dict[int, float]:
    """Per seed, the HV of the best known front without that seed: ``base`` (05's reference runs)
    and every run of ``others`` with another seed."""
    by_seed: dict[int, list] = {}
    for run in others:
        by_seed.setdefault(int(run.seed), []).append(run)
    points = {s: front_points(experiment, runs) for s, runs in by_seed.items()}
    base_points = front_points(experiment, base)
    fronts = {}
    for seed in seeds:
        kept = [base_points] + [p for s, p in points.items() if s != int(seed)]
        fronts[int(seed)] = experiment.hv(np.concatenate([m for m, _ in kept]), np.concatenate([l for _, l in kept]))
    return fronts


def _best_known_rows(experiment, runs, fronts: dict[int, float], reference: float) -> list[dict]:
    """Per method, its runs' final HV as a share of their seed's held-out best known front (t 95 %
    CI over the seeds), beside the fronts' own mean share of the reference."""
    rows = []
    for method in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == method]
        values = np.array([experiment.hv(r.miou, r.latency_ms) / fronts[int(r.seed)] for r in mine])
        low, high = mean_t_ci(values)
        rows.append({"method": method, "n_seeds": len(mine), "share_best_known_mean": float(values.mean()),
                     "share_best_known_ci95_low": float(low), "share_best_known_ci95_high": float(high),
                     "front_frac_reference": float(np.mean([fronts[int(r.seed)] for r in mine])) / reference})
    return rows


def reference_runs(setup, records, latency) -> tuple[ParetoExperiment, list, float]:
    """``(experiment, runs, reference HV)``: 05's fixed reference of the record's oracle, the HV
    of the compared runs (the record's profile's ``search.methods`` x ``search.seeds``) and the
    oracle's long run (``oracle_<n>``).

    Raises:
        ValueError: the record lacks one of the compared runs, or the oracle's run.
    """
    from ..config import load_profile
    from ..search.experiment import reference_hv

    made_with = load_profile(records.meta["profile"]).search
    runs = {(r.method, r.seed): r for r in recorded_runs(records, latency)}
    compared = [(m, s) for m in made_with.methods for s in made_with.seeds]
    lacking = [key for key in compared if key not in runs]
    oracle = recorded_runs(records, latency, f"oracle_{made_with.oracle_evals}")
    if lacking or not oracle:
        raise ValueError(f"{records.folder}: lacks 05's reference runs "
                         f"({lacking[:3] if lacking else f'oracle_{made_with.oracle_evals}'})")
    experiment = experiment_for(setup)
    base = [runs[key] for key in compared] + oracle
    return experiment, base, reference_hv(experiment, base)


LONG_CHECKPOINTS = (60, 120, 180, 240)  # evaluations at which a long study's paired effects are also read


def long_study(setup, records, latency, methods, seeds, evals: int, n_resamples: int = 2000, effects=(),
               control: str = "") -> dict:
    """A long-budget study on the record's runs of ``methods`` on ``seeds`` with ``evals``
    evaluations (folder ``long_<evals>``; the seeds with every method's run), against 05's fixed
    reference (:func:`reference_runs`) and a best known front that leaves out each run's own seed.

    Returns:
        ``{reference_hv, seeds, missing_seeds}`` and, with runs: 05's
        :func:`~linas_lib.search.experiment.long_budget` result (``curve``, ``reach``, ``final``, ...:
        shares of the reference); ``methods``: per method the final share of the reference and of
        the leave-one-seed-out best known front (:func:`_held_out_fronts`, t 95 % CIs over the seeds)
        and the Kaplan-Meier medians of evaluations to each level of the reference; ``effects``: per
        cause of ``effects`` (empty: :data:`~linas_lib.search.experiment.EFFECTS`) with both arms, the paired
        difference of the shares of the reference after :data:`LONG_CHECKPOINTS` and ``evals``
        evaluations (t 95 % CI, the bootstrap's as ``boot_ci95_*``); ``front``: the best known
        front's HV as runs join it; ``by_target``: 05's ``confirm_study`` per-target parts at the
        end; ``locality``: :func:`pick_locality` of the picks after 05's budget; with a ``control``
        among ``methods``, ``equivalence``: :func:`budget_equivalence`.
    """
    from ..search.experiment import EFFECTS, confirm_study, long_budget

    if not methods or not seeds:
        return {}
    experiment, base, reference = reference_runs(setup, records, latency)
    runs = {(r.method, r.seed): r for r in recorded_runs(records, latency, f"long_{evals}")}
    complete = [s for s in seeds if all((m, int(s)) in runs for m in methods)]
    chosen = [runs[(m, int(s))] for s in complete for m in methods]
    out = {"reference_hv": reference, "seeds": complete, "missing_seeds": [s for s in seeds if s not in complete]}
    if not chosen:
        return out
    short = [f"{r.method} seed {r.seed}: {r.n_evals}" for r in runs.values() if r.n_evals != evals]
    if short:
        raise ValueError(f"{records.folder}: long_{evals} holds runs of another length ({', '.join(short[:3])})")
    # every other run of the folder (plumbing runs, a seed cut by the stopping rule) joins each held-out front
    others = [r for key, r in runs.items() if key[1] not in complete]
    long = long_budget(experiment, chosen, recorded_runs(records, latency), reference, setup.eval_budget,
                       n_resamples=n_resamples)
    fronts, front_rows = _held_out_fronts(experiment, base, others, chosen, reference)
    curves = {(r.method, r.seed): experiment.hv_curve(r) for r in chosen}
    out.update({k: v for k, v in long.items() if k not in ("prefix_share", "effects")})  # no 60-evaluation runs
    out["methods"] = _long_method_rows(curves, long["reach"], fronts, reference)
    out["effects"] = _long_effects(curves, effects or EFFECTS, reference, evals, n_resamples)
    out["front"] = front_rows
    out["by_target"] = confirm_study(experiment, chosen, reference, n_resamples, effects)["by_target"]
    out["locality"] = pick_locality(chosen, setup.eval_budget)
    if control:
        out["equivalence"] = budget_equivalence(curves, control, setup.eval_budget, reference, n_resamples)
    return out


def budget_equivalence(curves, control: str, budget: int, reference: float, n_resamples: int = 2000) -> list[dict]:
    """Is a method worth more evaluations of ``control``? Per other method of ``curves``
    (``{(method, seed): anytime HV}``), the paired difference over seeds of ``control``'s share of
    the reference at its runs' end minus the method's after ``budget`` evaluations (above 0: the
    control's longer runs do better), with t and bootstrap 95 % CIs and ``reached_share``: the
    share of seeds where the control's end is at least the method's level (ties count). A signed
    difference in shares, not an equivalence test: 0.02 is 2 points of the reference."""
    rows = []
    for method in dict.fromkeys(m for m, _ in curves):
        seeds = sorted({s for m, s in curves if m == method} & {s for m, s in curves if m == control})
        if method == control or not seeds:
            continue
        values = np.array([curves[control, s][-1] - curves[method, s][budget - 1] for s in seeds]) / reference
        rows.append({**_paired_row(values, n_resamples, method=method, control=control, method_evals=budget,
                                   control_evals=len(curves[control, seeds[0]])),
                     "reached_share": float(np.mean(values >= 0))})
    return rows


def _held_out_fronts(experiment, base, others, runs, reference: float) -> tuple[dict[int, float], list[dict]]:
    """Per seed of ``runs``, the HV of the best known front without that seed's runs (``base``,
    ``others`` and the other seeds' ``runs``), and rows ``{front, hv, frac_reference}`` of the
    front as runs join it: the reference, with ``others``, with every run, and the mean of the
    held-out fronts (what one seed's runs add is the last two's difference)."""
    from ..search.experiment import reference_hv

    seeds = sorted({r.seed for r in runs})
    fronts = {s: reference_hv(experiment, base + others + [r for r in runs if r.seed != s]) for s in seeds}
    stages = {"reference": reference, "with_other_long_runs": reference_hv(experiment, base + others),
              "held_out_mean": float(np.mean(list(fronts.values()))),
              "with_every_run": reference_hv(experiment, base + others + list(runs))}
    return fronts, [{"front": k, "hv": v, "frac_reference": v / reference} for k, v in stages.items()]


def _long_method_rows(curves, reach, fronts: dict[int, float], reference: float) -> list[dict]:
    """:func:`long_study`'s ``methods`` rows."""
    rows = []
    for method in dict.fromkeys(m for m, _ in curves):
        seeds = sorted(s for m, s in curves if m == method)
        ends = np.array([curves[method, s][-1] for s in seeds])
        row = {"method": method, "n_seeds": len(seeds)}
        for name, values in (("reference", ends / reference), ("best_known", ends / np.array([fronts[s] for s in seeds]))):
            low, high = mean_t_ci(values)
            row.update({f"share_{name}_mean": float(values.mean()), f"share_{name}_ci95_low": low,
                        f"share_{name}_ci95_high": high})
        for pct, hit in reach[method].items():
            row[f"evals_to_{pct}pct"] = hit["km_median"]
            row[f"censored_share_{pct}pct"] = hit["censored_share"]
        rows.append(row)
    return rows


def _long_effects(curves, effects, reference: float, evals: int, n_resamples: int) -> list[dict]:
    """:func:`long_study`'s ``effects`` rows."""
    rows = []
    for effect, method, control in effects:
        seeds = sorted({s for m, s in curves if m == method} & {s for m, s in curves if m == control})
        if not seeds:
            continue
        for at in sorted({c for c in LONG_CHECKPOINTS if c < evals} | {evals}):
            values = np.array([curves[method, s][at - 1] - curves[control, s][at - 1] for s in seeds]) / reference
            rows.append(_paired_row(values, n_resamples, effect=effect, method=method, control=control, n_evals=at))
    return rows


def long_figures(study: dict, name: str) -> dict[str, float]:
    """Summary figures of :func:`long_study` named ``name``, each key under ``study.<name>.``:
    ``reference_hv``, ``n_seeds``, ``n_missing_seeds``; per method ``hv_frac_reference.<method>``
    and ``hv_frac_best_known.<method>`` (the leave-one-seed-out front) at the end with t
    ``_ci95_low/high``, ``evals_to_<pct>pct.<method>`` (Kaplan-Meier median of evaluations to
    that share of the reference; None: more than half censored) and ``censored_share_<pct>pct.<method>``;
    per effect and checkpoint ``effect.<effect>.<n>`` with t ``_ci95_low/high``; ``front.<stage>``
    (the best known front's share of the reference as runs join it); with a control,
    ``equivalence.<method>`` (t CI) and ``equivalence_reached_share.<method>``
    (:func:`budget_equivalence`)."""
    if not study:
        return {}
    key = f"study.{name}."
    out = {f"{key}reference_hv": study["reference_hv"], f"{key}n_seeds": float(len(study["seeds"])),
           f"{key}n_missing_seeds": float(len(study["missing_seeds"]))}
    for r in study.get("methods", []):
        m = r["method"]
        out.update(_with_ci(f"{key}hv_frac_reference.{m}", r, "share_reference"))
        out.update(_with_ci(f"{key}hv_frac_best_known.{m}", r, "share_best_known"))
        for field_, value in r.items():
            if field_.startswith(("evals_to_", "censored_share_")):
                out[f"{key}{field_}.{m}"] = None if isinstance(value, float) and np.isnan(value) else value
    for r in study.get("effects", []):
        out.update(_with_ci(f"{key}effect.{r['effect']}.{r['n_evals']}", r))
    for r in study.get("front", []):
        out[f"{key}front.{r['front']}"] = r["frac_reference"]
    for r in study.get("equivalence", []):
        out.update(_with_ci(f"{key}equivalence.{r['method']}", r))
        out[f"{key}equivalence_reached_share.{r['method']}"] = r["reached_share"]
    out.update(_part_figures(study, key))
    return out


def _part_figures(study: dict, key: str) -> dict[str, float]:
    """Per target ``contrib.<effect>.<target>`` and ``in_box_diff.<effect>.<target>``, and per
    method the :func:`pick_locality` quantities, each with its t ``_ci95_low/high``."""
    out = {}
    for r in study.get("by_target", []):
        out.update(_with_ci(f"{key}contrib.{r['effect']}.{r['target']}", r, "contrib"))
        out.update(_with_ci(f"{key}in_box_diff.{r['effect']}.{r['target']}", r, "in_box_diff"))
    for r in study.get("locality", []):
        out.update(_with_ci(f"{key}{r['quantity']}.{r['method']}", r))
    return out


def run_study(setup, records, latency, spec, n_resamples: int = 2000) -> dict:
    """One of ``records.studies`` (a :class:`~linas_lib.config.StudyConfig`): :func:`long_study`
    with ``spec.evals``, else :func:`cure_study`, each with 05's effects and the study's control's;
    the result's ``kind`` says which."""
    from ..search.experiment import EFFECTS

    effects = spec.effects(EFFECTS)
    if spec.evals:
        study = long_study(setup, records, latency, spec.methods, spec.seeds, spec.evals, n_resamples, effects,
                           spec.control)
        return {**study, "kind": "long"} if study else {}
    study = cure_study(setup, records, latency, spec.methods, spec.seeds, n_resamples, effects)
    return {**study, "kind": "budget"} if study else {}


def run_studies(profile, main, n_resamples: int = 2000) -> dict[str, dict]:
    """Every study of ``profile.records.studies`` (:func:`run_study`) by name, each on its record:
    ``main`` (:func:`~linas_lib.search.records.open_record`'s triple) or the study's own ``record``.
    A study on a record of its own also scores that record's compared runs against 05's
    committed files of the record's profile (``committed_05``:
    :func:`~linas_lib.search.records.committed_match`): all equal, the record holds 05's own oracle;
    and it replays its runs of the first ``records.replay_cap`` seeds of each method (``replay``:
    :func:`~linas_lib.search.records.replay_rows`; the main record's replay is 08's own cell)."""
    from ..paths import results_dir
    from ..search.records import replay_rows

    opened = study_records(profile, main)
    studies = {}
    for spec in profile.records.studies:
        records, setup, latency = opened[spec.name]
        study = run_study(setup, records, latency, spec, n_resamples)
        if spec.record and study:
            study["committed_05"] = committed_match(records, latency, setup, results_dir(records.meta["profile"], "05_pareto"))
            keys = [("", method, seed) for method in spec.methods
                    for seed in study["seeds"][:profile.records.replay_cap]]
            study["replay"] = replay_rows(setup, records, keys=keys)
        studies[spec.name] = study
    for spec in profile.records.studies:
        if spec.replicates and studies[spec.name] and studies[spec.replicates]:
            studies[spec.name]["between"] = between_studies(studies[spec.name], studies[spec.replicates])
    return studies


def between_studies(study: dict, first: dict) -> list[dict]:
    """Per effect of both budget studies, ``study``'s mean paired difference minus ``first``'s
    (``diff``: e.g. a study repeated on another oracle minus the first), with Welch's t 95 % CI
    over the two independent seed sets (``diff_ci95_low/high``)."""
    from ..stats import welch_ci

    earlier = {r["effect"]: r for r in first.get("effects", [])}
    rows = []
    for r in study.get("effects", []):
        e = earlier.get(r["effect"])
        if e is not None:
            diff, low, high = welch_ci(r["diff_mean"], r["diff_sd"], r["n_seeds"], e["diff_mean"], e["diff_sd"],
                                       e["n_seeds"])
            rows.append({"effect": r["effect"], "mean": r["diff_mean"], "first_mean": e["diff_mean"],
                         "diff_mean": diff, "diff_ci95_low": low, "diff_ci95_high": high})
    return rows


STUDY_TABLES = {"budget": ("methods", "effects", "by_target", "locality", "best_known", "between", "replay"),
                "long": ("methods", "effects", "by_target", "locality", "front", "equivalence")}  # its anytime curve: a CSV and a figure


def study_tables(study: dict) -> dict[str, list[dict]]:
    """A :func:`run_study` result's tables by part (none without runs)."""
    return {part: study[part] for part in STUDY_TABLES.get(study.get("kind", ""), ()) if part in study}


def study_figures(study: dict, name: str) -> dict[str, float]:
    """:func:`long_figures` or :func:`cure_figures` of a :func:`run_study` result, and with its
    ``committed_05`` (:func:`run_studies`) its counts as ``study.<name>.committed_05.<count>``, and
    with its ``between`` (:func:`between_studies`) ``study.<name>.between.<effect>`` with its CI,
    with its ``replay`` ``study.<name>.replay.n_runs`` and ``study.<name>.replay.n_identical``."""
    out = (long_figures if study.get("kind") == "long" else cure_figures)(study, name)
    out.update({f"study.{name}.committed_05.{k}": v for k, v in study.get("committed_05", {}).items()})
    if "replay" in study:
        out[f"study.{name}.replay.n_runs"] = float(len(study["replay"]))
        out[f"study.{name}.replay.n_identical"] = float(sum(r["identical"] for r in study["replay"]))
    for r in study.get("between", []):
        out.update(_with_ci(f"study.{name}.between.{r['effect']}", r, "diff"))
    return out


def pick_locality(runs, n_init: int) -> list[dict]:
    """How far each run's picks lie from what it had evaluated before: per method, over seeds
    (t 95 % CIs), the share of evaluations after the first ``n_init`` that are one layer from an
    earlier one (``quantity`` ``one_layer_share``), their mean distance in layers to the
    nearest earlier one (``mean_distance``) and the share of them that another seed's run of
    the method picked after its own first ``n_init`` too (``cross_seed_share``: near 1, the
    method follows one trajectory whatever the seed; it grows with the study's seeds and its
    per-seed values depend on each other, so its t CI is descriptive, compared within a study)."""
    per: dict[str, dict[str, list[float]]] = {}
    later = {id(run): [tuple(row) for row in np.asarray(run.choices)[n_init:]] for run in runs}
    for run in runs:
        choices = np.asarray(run.choices)
        nearest = [int((choices[:i] != choices[i]).sum(axis=1).min()) for i in range(max(1, n_init), len(choices))]
        others = {arch for other in runs if other.method == run.method and other.seed != run.seed
                  for arch in later[id(other)]}
        mine = per.setdefault(run.method, {"one_layer_share": [], "mean_distance": [], "cross_seed_share": []})
        mine["one_layer_share"].append(float(np.mean(np.equal(nearest, 1))) if nearest else float("nan"))
        mine["mean_distance"].append(float(np.mean(nearest)) if nearest else float("nan"))
        mine["cross_seed_share"].append(float(np.mean([arch in others for arch in later[id(run)]]))
                                        if later[id(run)] else float("nan"))
    return [_ci_row(values, method=method, quantity=quantity)
            for method, quantities in per.items() for quantity, values in quantities.items()]


def cure_figures(study: dict, name: str) -> dict[str, float]:
    """Summary figures of :func:`cure_study` named ``name``, each key under ``study.<name>.``:
    ``reference_hv``, ``n_seeds``, ``n_missing_seeds``, ``hv_frac_reference.<method>`` and
    ``effect.<effect>`` with ``_ci95_low/high`` (t), per target ``contrib.<effect>.<target>`` and
    ``in_box_diff.<effect>.<target>`` with theirs, per method ``<quantity>.<method>`` of
    :func:`pick_locality` with theirs, and per method ``hv_frac_best_known.<method>`` (t CI: the
    share of each seed's held-out best known front, :func:`held_out_best_known`) with
    ``best_known_front_frac_reference.<method>`` (those fronts' mean HV over the reference's)."""
    if not study:
        return {}
    key = f"study.{name}."
    out = {f"{key}reference_hv": study["reference_hv"], f"{key}n_seeds": float(len(study["seeds"])),
           f"{key}n_missing_seeds": float(len(study["missing_seeds"]))}
    for r in study["methods"]:
        out.update(_with_ci(f"{key}hv_frac_reference.{r['method']}", r, "share"))
    for r in study["effects"]:
        out.update(_with_ci(f"{key}effect.{r['effect']}", r, "diff"))
    for r in study.get("best_known", []):
        out.update(_with_ci(f"{key}hv_frac_best_known.{r['method']}", r, "share_best_known"))
        out[f"{key}best_known_front_frac_reference.{r['method']}"] = r["front_frac_reference"]
    out.update(_part_figures(study, key))
    return out

