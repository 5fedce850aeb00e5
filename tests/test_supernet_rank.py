"""A supernet trained to rank (issue 11, item 2): one-shot rules, I2, BN recalibration, held-out WS, variants."""

from __future__ import annotations

import copy
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from linas_lib.config import Profile, SupernetConfig
from linas_lib.encoder.features import Features, FeatureSplit
from linas_lib.keys import WriteError
from linas_lib.space import choice_index
from linas_lib.supernet import oneshot as O
from linas_lib.supernet import train as T
from linas_lib.supernet.evaluate import SCORES, WeightSharingEvaluator
from linas_lib.supernet.model import (Supernet, candidate_param_counts, largest_path, mean_path_complexity,
                                      path_complexity, smallest_path)
from test_supernet import RES, TINY, _assert_equal_nested, _final, _tiny_split, _trained_tiny, tiny_supernet


@pytest.fixture(autouse=True)
def _native_kernels():
    """oneDNN's per-shape kernel set-up dominates on these tiny tensors; the native kernels are quicker.

    One thread: tiny tensors gain nothing from two, and on a busy 2-core machine the threads'
    synchronisation made these tests 10-40x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.backends.mkldnn.flags(enabled=False):
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def tiny_training(monkeypatch, tmp_path):
    """Training builds the tiny supernet, caches go to ``tmp_path``, the memo starts empty."""
    monkeypatch.setattr(T, "Supernet", lambda: Supernet(channels=TINY, deep_channels=24))
    monkeypatch.setattr(T, "cache_dir", lambda *parts: tmp_path)
    monkeypatch.setattr(T, "_MEMO", {})
    return T


def _rule(model, **cfg) -> O.OneShotRule:
    return O.one_shot_rule(SupernetConfig(**cfg), model)


class _FixedRule(O.OneShotRule):
    """A rule whose uniform draw is a fixed path."""

    def draw(self, model, gen):
        return [np.asarray(self.fixed_path)]


def _fixed(rule: O.OneShotRule, path) -> _FixedRule:
    fixed = _FixedRule(rule.sampling, rule.n_random, rule.calr, rule.counts, rule.bin_edges)
    object.__setattr__(fixed, "fixed_path", np.asarray(path, dtype=np.int64))
    return fixed


def _params(modules) -> list[torch.Tensor]:
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _batch(seed: int = 0):
    split = _tiny_split(2, seed)
    return split.batch(np.arange(2))


# ------------------------------------------------------------------ sizes, sampling, bins


def test_largest_and_smallest_paths_of_the_search_space():
    with torch.device("meta"):  # shapes only: the full supernet's parameter counts without its memory
        counts = candidate_param_counts(Supernet())
    assert largest_path().tolist() == [choice_index("Conv7x7", 100)] * 5
    assert smallest_path(counts).tolist() == [choice_index("DWSep3x3", 50)] * 5
    assert path_complexity(counts, largest_path()) == counts.max(axis=1).sum()
    assert mean_path_complexity(counts) == pytest.approx(counts.mean(axis=1).sum())


def test_complexity_bins_are_quantiles_of_every_path():
    counts = np.array([[1.0, 2.0], [10.0, 20.0]])  # paths: 11, 12, 21, 22
    assert sorted(O.complexity_distribution(counts)) == [11, 12, 21, 22]
    np.testing.assert_allclose(O.complexity_bin_edges(counts, 2), [16.5])
    assert O.complexity_bin_edges(counts, 0).size == 0 and O.complexity_bin_edges(counts, 1).size == 0
    rule = O.OneShotRule("uniform", 0, False, counts, O.complexity_bin_edges(counts, 2))
    assert [rule.bin_of(p) for p in ([0, 0], [1, 0], [0, 1], [1, 1])] == [0, 0, 1, 1]


def test_sandwich_step_updates_the_largest_and_smallest_paths_every_step():
    model = tiny_supernet(1)
    rule = _rule(model, sampling="sandwich", sandwich_random=1)
    big, small = largest_path(), smallest_path(rule.counts)
    assert (big != small).all()
    opt = torch.optim.Adam(model.weight_parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        before_big, before_small = _params(model.path_candidates(big)), _params(model.path_candidates(small))
        untouched = [(layer, c) for layer in range(5) for c in range(21)]
        before_all = {lc: _params([model.layers[lc[0]].candidates[lc[1]]]) for lc in untouched}
        loss, paths = O.one_shot_step(model, [opt], rule, *_batch(step), gen, f"step {step}")
        assert np.isfinite(loss) and len(paths) == 3
        assert (paths[0] == big).all() and (paths[1] == small).all()
        for before, path in ((before_big, big), (before_small, small)):
            after = _params(model.path_candidates(path))
            assert all(not torch.equal(a, b) for a, b in zip(before, after)), f"step {step}: path {path} not updated"
        ran = {(layer, int(p[layer])) for p in paths for layer in range(5)}
        for lc, before in before_all.items():  # candidates no path ran keep their weights
            if lc not in ran:
                assert all(torch.equal(a, b) for a, b in zip(before, _params([model.layers[lc[0]].candidates[lc[1]]])))


def _path_with_scale_inside(rule: O.OneShotRule) -> np.ndarray:
    """A path whose CaLR factor is neither clipped nor 1."""
    mean = mean_path_complexity(rule.counts)
    for code in range(21**2):
        path = np.array([code // 21, code % 21, 3, 4, 5])
        ratio = (path_complexity(rule.counts, path) / mean) ** 0.5
        if 0.6 < ratio < 0.9 or 1.1 < ratio < 1.8:
            return path
    raise AssertionError("no unclipped path in the tiny plan")


def _delta_of_step(rule, path, optimizer_cls, lr) -> list[torch.Tensor]:
    """Change of ``path``'s candidates in one step (float64: differences of parameters stay exact enough)."""
    model = tiny_supernet(2).double()
    before = _params(model.path_candidates(path))
    opt = optimizer_cls(model.weight_parameters(), lr=lr)
    taps, masks = _batch()
    O.one_shot_step(model, [opt], rule, tuple(t.double() for t in taps), masks, torch.Generator().manual_seed(0), "calr")
    assert all(group["lr"] == lr for group in opt.param_groups)  # the scaled rate was for this step only
    return [a - b for a, b in zip(_params(model.path_candidates(path)), before)]


@pytest.mark.parametrize("which", ["inside", "largest"])
def test_calr_scales_the_uniform_step_by_the_paths_complexity(which):
    model = tiny_supernet(2)
    base = _rule(model, sampling="uniform")
    path = _path_with_scale_inside(base) if which == "inside" else largest_path()
    ratio = path_complexity(base.counts, path) / mean_path_complexity(base.counts)
    expected = min(max(ratio**0.5, 0.5), 2.0)
    assert expected != 1.0 and (expected == 2.0) == (which == "largest")
    off = _delta_of_step(_fixed(base, path), path, torch.optim.Adam, 1e-3)
    on = _delta_of_step(_fixed(replace(base, calr=True), path), path, torch.optim.Adam, 1e-3)
    assert _fixed(replace(base, calr=True), path).scale(path) == pytest.approx(expected)
    moved = [(a, b) for a, b in zip(on, off) if b.abs().max() > 1e-7]
    assert moved
    for a, b in moved:
        torch.testing.assert_close(a, expected * b, rtol=1e-6, atol=1e-12)


def _moves_of_step(rule, optimizers: int = 1) -> dict[str, torch.Tensor]:
    """Every weight's change in one Adam step of ``rule`` on the tiny supernet (float64), by name."""
    model = tiny_supernet(2).double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opts = [torch.optim.Adam(model.weight_parameters(), lr=1e-3) for _ in range(optimizers)]
    taps, masks = _batch()
    O.one_shot_step(model, opts, rule, tuple(t.double() for t in taps), masks, torch.Generator().manual_seed(0), "calr")
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


@pytest.mark.parametrize("bins", [0, 2])
def test_calr_scales_each_parameters_sandwich_step_by_the_factors_of_the_paths_that_ran_it(bins):
    model = tiny_supernet(2)
    base = _rule(model, sampling="sandwich", sandwich_random=0, momentum_bins=bins)
    scaled = replace(base, calr=True)
    big, small = largest_path(), smallest_path(base.counts)
    f_big, f_small = scaled.scale(big), scaled.scale(small)
    assert f_big != f_small and (big != small).all()
    off, on = _moves_of_step(base, max(bins, 1)), _moves_of_step(scaled, max(bins, 1))
    # an Adam step is not proportional to the loss: under the former loss scaling `on` was about
    # `off` for a candidate one path ran; a per-path learning rate scales that candidate's move
    # the head both paths ran: the mean factor in one group; with bins, each bin's own proposal is scaled
    factors = {"head.": (f_big + f_small) / 2, "bottleneck.": (f_big + f_small) / 2} if not bins else {}
    for layer in range(5):
        factors[f"layers.{layer}.candidates.{int(big[layer])}."] = f_big
        factors[f"layers.{layer}.candidates.{int(small[layer])}."] = f_small
    checked = set()
    for name, move in off.items():
        prefix = next((k for k in factors if name.startswith(k)), None)
        if prefix is None or move.abs().max() < 1e-9:
            continue
        torch.testing.assert_close(on[name], factors[prefix] * move, rtol=1e-6, atol=1e-12)
        checked.add(prefix)
    assert checked == set(factors)


def test_calr_scales_a_search_phase_weight_step_by_its_sampled_paths_factor():
    def delta(lr_scale_of):
        model = tiny_supernet(2).double()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.Adam(model.weight_parameters(), lr=1e-3)
        taps, masks = _batch()
        T.weight_step(model, opt, tuple(t.double() for t in taps), masks, "binarised", 1.0,
                      torch.Generator().manual_seed(5), "search", lr_scale_of=lr_scale_of)
        assert all(group["lr"] == 1e-3 for group in opt.param_groups)  # scaled for this step only
        return {n: p.detach() - before[n] for n, p in model.named_parameters()}

    seen = []
    off, on = delta(None), delta(lambda path: seen.append(np.asarray(path)) or 0.7)
    assert len(seen) == 1  # asked once, for the path the step sampled
    moved = [n for n, d in off.items() if d.abs().max() > 1e-9]
    assert moved
    for name in moved:
        torch.testing.assert_close(on[name], 0.7 * off[name], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("calr, calr_search", [(False, True), (True, True), (True, False)])
def test_the_search_phase_scales_its_weight_steps_only_under_calr(monkeypatch, tmp_path, tiny_training, calr,
                                                                   calr_search):
    train, val = _tiny_split(4, 31), _tiny_split(4, 32)
    cfg = SupernetConfig(warmup_epochs=0, epochs=1, batch_size=2, lr_weights=1e-2, lr_alpha=0.05, sampling="sandwich",
                         sandwich_random=1, calr=calr, calr_search=calr_search, alpha_val_share=0.5,
                         bn_recalib_batches=1)
    calr = calr and calr_search  # calr_search False: CaLR in the one-shot phase only
    real, scales = T.weight_step, []

    def recording(*args, **kwargs):
        scales.append(args[9] if len(args) > 9 else kwargs.get("lr_scale_of"))
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "weight_step", recording)
    state = T.train_supernet(cfg, 3, train, val, None, tmp_path / "calr.pt", "k")
    assert len(scales) == 2  # 4 images, batch 2
    path = largest_path()
    for scale_of in scales:
        assert (scale_of is not None) == calr
        if calr:
            assert scale_of(path) == state.rule.scale(path) == 2.0


def test_momentum_bins_route_each_step_to_its_bins_optimizer():
    model = tiny_supernet(3)
    rule = _rule(model, sampling="uniform", momentum_bins=3)
    assert len(rule.bin_edges) == 2
    opts = [torch.optim.Adam(model.weight_parameters(), lr=1e-3) for _ in range(3)]
    gen, bins = torch.Generator().manual_seed(4), []
    for step in range(12):
        _, paths = O.one_shot_step(model, opts, rule, *_batch(step), gen, f"step {step}")
        bins.append(rule.bin_of(paths[0]))
    assert len(set(bins)) >= 2, "the draws should reach several bins"
    shared = model.head.weight  # every path updates the head: its step count per optimiser = steps in that bin
    steps = [int(opt.state[shared]["step"]) if shared in opt.state else 0 for opt in opts]
    assert steps == [bins.count(b) for b in range(3)]
    first = [b for b in range(3) if steps[b]]
    assert not torch.equal(opts[first[0]].state[shared]["exp_avg"], opts[first[1]].state[shared]["exp_avg"])


def test_momentum_bins_move_a_shared_parameter_by_the_mean_of_the_bins_steps():
    model = tiny_supernet(3)
    rule = _rule(model, sampling="sandwich", sandwich_random=0, momentum_bins=2)
    big, small = largest_path(), smallest_path(rule.counts)
    assert rule.bin_of(big) != rule.bin_of(small)
    lr = 1e-2
    opts = [torch.optim.Adam(model.weight_parameters(), lr=lr) for _ in range(2)]
    head, own = model.head.weight, next(model.layers[0].candidates[int(big[0])].parameters())
    head0, own0 = head.detach().clone(), own.detach().clone()
    O.one_shot_step(model, opts, rule, *_batch(), torch.Generator().manual_seed(0), "bins")
    # a first Adam step moves each element by about lr: the head, which both bins step, moves by
    # their mean (at most lr), not by their sum (up to 2 lr); the largest path's own candidate by its bin's step
    assert float((head.detach() - head0).abs().max()) <= lr * 1.001
    assert float((own.detach() - own0).abs().max()) == pytest.approx(lr, rel=1e-2)
    assert all(int(opt.state[head]["step"]) == 1 for opt in opts)  # each bin's moments saw its own gradient


def test_momentum_bins_serve_the_search_phase_steps(tmp_path, tiny_training):
    train, val = _tiny_split(4, 31), _tiny_split(4, 32)
    cfg = SupernetConfig(warmup_epochs=0, epochs=1, batch_size=2, lr_weights=1e-2, lr_alpha=0.05, sampling="sandwich",
                         sandwich_random=1, momentum_bins=2, alpha_val_share=0.5, bn_recalib_batches=1)
    state = T.train_supernet(cfg, 3, train, val, None, tmp_path / "bins.pt", "k")
    assert not state.opt_w.state  # it would start the search phase from zero moments
    head = state.model.head.weight
    assert sum(int(o.state[head]["step"]) for o in state.opt_bins if head in o.state) == 2  # 4 images, batch 2


class _Interrupted(Exception):
    pass


def test_momentum_bins_resume_bit_identically(tmp_path, tiny_training):
    train, val = _tiny_split(4, 31), _tiny_split(4, 32)
    cfg = SupernetConfig(warmup_epochs=2, epochs=1, batch_size=2, lr_weights=1e-2, lr_alpha=0.05, sampling="sandwich",
                         sandwich_random=1, calr=True, momentum_bins=2, alpha_val_share=0.5, bn_recalib_batches=1)

    def final(state):
        out = _final(state)
        out.update(opt_bins=[o.state_dict() for o in state.opt_bins], weight_steps=state.weight_steps,
                   choice_updates=torch.as_tensor(state.choice_updates))
        return out

    whole = final(T.train_supernet(cfg, 3, train, val, None, tmp_path / "whole.pt", "k"))
    assert whole["weight_steps"] == 4 and sum(bool(s["state"]) for s in whole["opt_bins"]) == 2
    real = T.run_epoch

    def stop_at_second(state, epoch, *args):
        if epoch == 1:
            raise _Interrupted
        return real(state, epoch, *args)

    T.run_epoch = stop_at_second
    try:
        with pytest.raises(_Interrupted):
            T.train_supernet(cfg, 3, train, val, None, tmp_path / "resumed.pt", "k")
    finally:
        T.run_epoch = real
    saved = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert len(saved["history"]) == 1 and len(saved["opt_bins"]) == 2 and saved["weight_steps"] == 2
    resumed = final(T.train_supernet(cfg, 3, train, val, None, tmp_path / "resumed.pt", "k"))
    _assert_equal_nested(whole, resumed)


# ------------------------------------------------------------------ weight-sharing evaluation


def test_bn_recalibration_fixes_off_statistics_and_leaves_the_supernet_bit_identical():
    model = _trained_tiny()
    train, held_out = _tiny_split(4, 51), _tiny_split(3, 52)
    path = np.array([0, 4, 8, 12, 20])
    recal = lambda m: WeightSharingEvaluator(m, held_out, 2, recalib=train, recalib_batches=2)  # noqa: E731
    plain = lambda m: WeightSharingEvaluator(m, held_out, 2)  # noqa: E731
    clean_recal = recal(model).scores(path)

    off = copy.deepcopy(model)
    for cand in off.path_candidates(path):  # statistics far from what the weights produce
        cand.bn.running_mean.add_(5.0)
        cand.bn.running_var.mul_(50.0)
    state = {k: v.clone() for k, v in off.state_dict().items()}
    flags = {name: m.training for name, m in off.named_modules()}
    momenta = [m.momentum for m in off.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    off_plain, off_recal = plain(off).scores(path), recal(off).scores(path)
    assert off_plain["miou"] != pytest.approx(off_recal["miou"])  # recalibration changed the score ...
    for name in ("miou", "crack_iou", "loss"):  # ... to that of fresh statistics, whatever they were
        assert off_recal[name] == pytest.approx(clean_recal[name])
    assert set(off_recal) == set(SCORES)
    after = off.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # the supernet itself is bit-identical
    assert {name: m.training for name, m in off.named_modules()} == flags
    assert [m.momentum for m in off.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta


def test_evaluator_memoises_and_needs_its_recalibration_split():
    model = _trained_tiny()
    ev = WeightSharingEvaluator(model, _tiny_split(2, 53), 2, recalib=_tiny_split(4, 54), recalib_batches=1)
    first = ev.scores(np.array([[1, 2, 3, 4, 5], [0, 0, 0, 0, 0]]))
    assert first["miou"].shape == (2,) and len(ev.memo) == 2
    assert ev.evaluate(np.array([1, 2, 3, 4, 5]))[0] == first["miou"][0]
    with pytest.raises(ValueError, match="recalib"):
        WeightSharingEvaluator(model, _tiny_split(2, 53), 2, recalib_batches=1)


def _marked_val(n: int, n_alpha: int) -> FeatureSplit:
    """A val split whose alpha images have empty masks and whose held-out images are all defect."""
    split = _tiny_split(n, 61)
    masks = torch.zeros_like(split.masks)
    masks[n_alpha:] = 1
    return FeatureSplit(split.taps, masks, split.names)


def test_alpha_val_share_splits_val_into_disjoint_parts():
    val = _tiny_split(5, 62)
    alpha, held = T.val_parts(val, 0.5)
    assert alpha.names == val.names[:3] and held.names == val.names[3:]  # round(2.5) -> 3, fixed order
    assert torch.equal(held.masks, val.masks[3:]) and torch.equal(held.taps[4], val.taps[4][3:])
    assert not set(alpha.names) & set(held.names)
    assert T.val_parts(val, 1.0) == (val, val)
    assert len(T.val_parts(val, 0.01)[0]) == 1 and len(T.val_parts(val, 0.99)[1]) == 1
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="alpha_val_share"):
            T.val_parts(val, bad)


def test_alpha_steps_read_only_their_part_and_ws_only_the_held_out_part(monkeypatch, tiny_training):
    val = _marked_val(4, 2)
    seen = []
    real = T.arch_step
    monkeypatch.setattr(T, "arch_step", lambda model, opt, taps, masks, *a: seen.append(int(masks.sum())) or
                        real(model, opt, taps, masks, *a))
    cfg = SupernetConfig(warmup_epochs=0, epochs=1, batch_size=2, alpha_val_share=0.5, bn_recalib_batches=1)
    state = T.train_supernet(cfg, 0, _tiny_split(4, 63), val, None)
    assert seen and all(s == 0 for s in seen)  # alpha steps never saw a held-out image
    ts = T.TrainedSupernet(state.model, state.history, Features({"train": _tiny_split(4, 63), "val": val}, None, {}),
                           cfg, None, "k")
    assert ts.evaluator.split.names == val.names[2:] and bool((ts.evaluator.split.masks == 1).all())
    assert ts.alpha_split.names == val.names[:2]
    scores = ts.ws_scores(np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]))
    assert set(scores) == {"miou", "crack_iou", "loss"} and scores["crack_iou"].shape == (2,)
    assert (scores["loss"] > 0).all()
    assert T.TrainedSupernet(state.model, [], ts.features, replace(cfg, alpha_val_share=1.0), None,
                             "k").evaluator.split.names == val.names


# ------------------------------------------------------------------ variants, keys, snapshots


def _key(cfg) -> str:
    features = Features({"train": _tiny_split(2, 71), "val": _tiny_split(2, 72)}, SimpleNamespace(weights_id="w"), {})
    return T.supernet_key(SimpleNamespace(supernet=cfg), 0, features, None)


def test_variants_give_their_own_keys_and_equal_settings_share_one():
    base = SupernetConfig(sampling="uniform")
    keys = {name: _key(T.variant_config(base, name)) for name in T.VARIANTS}
    assert len(set(keys.values())) == len(T.VARIANTS)
    assert keys["baseline"] == _key(base) == _key(T.variant_config(base, None))
    as_sandwich = replace(base, sampling="sandwich")
    assert _key(T.variant_config(as_sandwich, "sandwich")) == _key(as_sandwich) == keys["sandwich"]
    assert T.variant_config(base, "i2") == replace(base, sampling="sandwich", calr=True, momentum_bins=4)
    assert _key(replace(base, eval_checkpoints=(3,), checkpoint_every_s=9.0, snapshots_on_disk=False)) == _key(base)
    with pytest.raises(ValueError, match="unknown supernet variant 'nope'"):
        T.variant_config(base, "nope")


def _fake_run_inputs(features):
    def run_inputs(profile, seed):
        return T.supernet_key(profile, seed, features, None), features, None

    return run_inputs


def test_a_calr_supernet_key_names_the_rules_its_training_follows(monkeypatch):
    monkeypatch.setattr(T, "dataset_digest_of", lambda split: "d")
    splits = {"train": SimpleNamespace(names=("a",)), "val": SimpleNamespace(names=("b",))}
    features = type("F", (), {"weights": SimpleNamespace(weights_id="w"), "__getitem__": lambda self, k: splits[k]})()

    def key(**cfg):
        return T.supernet_key(SimpleNamespace(supernet=SupernetConfig(**cfg)), 0, features, None)

    def fields(**cfg):
        seen = {}
        monkeypatch.setattr(T, "content_hash", lambda obj: seen.update(obj) or "h")
        key(**cfg)
        return {k: seen.get(k) for k in ("calr_step", "calr_search_steps")}

    assert fields(calr=False) == {"calr_step": None, "calr_search_steps": None}
    assert fields(calr=True, sampling="sandwich", epochs=3, search_mode="binarised") == {
        "calr_step": "per_parameter", "calr_search_steps": True}
    assert fields(calr=True, sampling="uniform", epochs=3, search_mode="binarised") == {
        "calr_step": None, "calr_search_steps": True}
    assert fields(calr=True, calr_search=False, sampling="sandwich", epochs=3, search_mode="binarised") == {
        "calr_step": "per_parameter", "calr_search_steps": False}  # never the key of the rule before 230b5bf
    # a mixture's weight steps and an empty search phase have no sampled path to scale
    assert fields(calr=True, sampling="sandwich", epochs=3, search_mode="gumbel")["calr_search_steps"] is None
    assert fields(calr=True, sampling="sandwich", epochs=0, search_mode="binarised")["calr_search_steps"] is None


def test_trained_supernet_shares_a_run_between_equal_variants_and_saves_snapshots(monkeypatch, tmp_path,
                                                                                 tiny_training):
    features = Features({"train": _tiny_split(4, 81), "val": _tiny_split(2, 82)}, SimpleNamespace(weights_id="w"), {})
    monkeypatch.setattr(T, "_run_inputs", _fake_run_inputs(features))
    cfg = SupernetConfig(warmup_epochs=2, epochs=0, batch_size=2, sandwich_random=0, eval_checkpoints=(2,))
    profile = Profile(name="tiny", supernet=cfg)
    calls = []
    real = T.train_supernet
    monkeypatch.setattr(T, "train_supernet", lambda *a, **k: calls.append(a[7:]) or real(*a, **k))

    own = T.trained_supernet(profile, 0)
    assert own.history[-1]["weight_steps"] == 4 and own.history[-1]["updates_per_choice"] == pytest.approx(4 / 21)
    baseline = T.trained_supernet(profile, 0, "baseline")
    assert baseline.model is own.model and baseline.variant == "baseline" and len(calls) == 1
    sandwich = T.trained_supernet(profile, 0, "sandwich")
    assert sandwich.key != own.key and len(calls) == 2 and sandwich.cfg.sampling == "sandwich"
    assert sandwich.history[-1]["choice_updates_min"] >= 0 and sandwich.history[0]["mode"] == "sandwich"

    saved = list(tmp_path.glob(f"supernet_{own.key}_steps2.pt"))
    assert len(saved) == 1
    at2 = T.supernet_at_steps(profile, 0, 2)  # saved during training: loaded, not trained
    assert len(calls) == 2 and at2.weight_steps == 2 and at2.key != own.key
    replay = real(cfg, 0, features["train"], features["val"], None, None, own.key, tmp_path / "replay", 2)
    _assert_equal_nested(at2.model.state_dict(), replay.model.state_dict())
    assert not any(torch.equal(v, own.model.state_dict()[k]) for k, v in at2.model.state_dict().items()
                   if k.startswith("bottleneck"))
    checkpoint = tmp_path / f"supernet_{own.key}.pt"
    mtime = checkpoint.stat().st_mtime_ns
    at3 = T.supernet_at_steps(profile, 0, 3)  # no snapshot: replayed to step 3, the run's checkpoint untouched
    assert len(calls) == 3 and calls[-1] == (tmp_path, 3) and checkpoint.stat().st_mtime_ns == mtime
    assert (tmp_path / f"supernet_{own.key}_steps3.pt").is_file()
    assert [h["train_loss"] for h in at3.history] == [own.history[0]["train_loss"]]
    with pytest.raises(ValueError, match=r"steps must lie in 1\.\.4"):
        T.supernet_at_steps(profile, 0, 5)


def test_an_ablation_of_the_search_phase_shares_its_one_shot_phase_and_snapshots(monkeypatch, tmp_path, tiny_training):
    """i2_oneshot_calr differs from i2 in the search phase only: another run, the same one-shot
    steps, and i2's snapshots serve it (neither trains its one-shot phase twice)."""
    features = Features({"train": _tiny_split(4, 81), "val": _tiny_split(4, 82)}, SimpleNamespace(weights_id="w"), {})
    monkeypatch.setattr(T, "_run_inputs", _fake_run_inputs(features))
    cfg = SupernetConfig(warmup_epochs=1, epochs=1, batch_size=2, sandwich_random=0, search_mode="binarised",
                         alpha_val_share=0.5, eval_checkpoints=(2,))
    profile = Profile(name="tiny", supernet=cfg)
    i2, ablation = T.trained_supernet(profile, 0, "i2"), T.trained_supernet(profile, 0, "i2_oneshot_calr")
    assert i2.key != ablation.key
    assert T.oneshot_key(T.variant_profile(profile, "i2_oneshot_calr"), 0) == T.oneshot_key(
        T.variant_profile(profile, "i2"), 0) == i2.key
    timeless = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert timeless(ablation.history[0]) == timeless(i2.history[0])  # the one-shot epoch, row for row
    assert ablation.history[1]["train_loss"] != i2.history[1]["train_loss"]  # the search epochs differ
    assert sorted(p.name for p in tmp_path.glob("*_steps*.pt")) == [f"supernet_{i2.key}_steps2.pt"]
    calls = []
    monkeypatch.setattr(T, "train_supernet", lambda *a, **k: calls.append(a) or pytest.fail("replayed"))
    at2 = T.supernet_at_steps(profile, 0, 2, "i2_oneshot_calr")
    assert not calls and at2.weight_steps == 2 and at2.variant == "i2_oneshot_calr"

    from linas_lib.analysis.ranking import ablation_checks
    from linas_lib.config import RankingConfig

    ranked = Profile(name="tiny", supernet=cfg, ranking=RankingConfig(variants=("i2",), retest_variants=("i2",),
                                                                      search_ablations=("i2_oneshot_calr",)))
    assert ablation_checks(ranked, 0) == {"search_ablation.oneshot_rows_equal.i2_oneshot_calr": 1.0}
    i2.history[0]["train_loss"] += 1e-9  # a one-shot phase trained otherwise (another machine's cache)
    assert ablation_checks(ranked, 0) == {"search_ablation.oneshot_rows_equal.i2_oneshot_calr": 0.0}


def test_a_longer_one_shot_phase_begins_with_the_profile_own_steps(monkeypatch, tmp_path, tiny_training):
    """The tau-vs-steps curve may follow a longer one-shot phase (ranking.steps_oneshot_epochs):
    its snapshot after the profile's own steps is the profile's own supernet at that step."""
    from linas_lib.analysis.ranking import curve_profile
    from linas_lib.config import RankingConfig

    features = Features({"train": _tiny_split(4, 81), "val": _tiny_split(2, 82)}, SimpleNamespace(weights_id="w"), {})
    monkeypatch.setattr(T, "_run_inputs", _fake_run_inputs(features))
    cfg = SupernetConfig(warmup_epochs=2, epochs=0, batch_size=2, sandwich_random=0, eval_checkpoints=(4,))
    profile = Profile(name="tiny", supernet=cfg, ranking=RankingConfig(steps=(4, 8), steps_oneshot_epochs=4))
    longer = curve_profile(profile)
    assert longer.supernet.warmup_epochs == 4 and longer.supernet.eval_checkpoints == (4, 8)
    at8 = T.supernet_at_steps(longer, 0, 8)  # one replay saves the snapshot at 4 on its way
    long_key = T.supernet_key(longer, 0, features, None)
    assert at8.weight_steps == 8 and (tmp_path / f"supernet_{long_key}_steps4.pt").is_file()
    own4, long4 = T.supernet_at_steps(profile, 0, 4), T.supernet_at_steps(longer, 0, 4)
    assert own4.key != long4.key  # a run of its own ...
    _assert_equal_nested(own4.model.state_dict(), long4.model.state_dict())  # ... that begins with the profile's
    assert not all(torch.equal(v, at8.model.state_dict()[k]) for k, v in long4.model.state_dict().items())


def test_the_one_shot_average_only_observes_and_replaces_the_weights_when_the_phase_ends(monkeypatch, tmp_path,
                                                                                        tiny_training):
    """supernet.oneshot_ema: the raw steps are those of the run without it; a snapshot holds the
    average (known value after two steps) and the raw weights; the phase's end installs the average."""
    features = Features({"train": _tiny_split(4, 81), "val": _tiny_split(2, 82)}, SimpleNamespace(weights_id="w"), {})
    monkeypatch.setattr(T, "_run_inputs", _fake_run_inputs(features))
    plain = SupernetConfig(warmup_epochs=2, epochs=0, batch_size=2, sandwich_random=0, eval_checkpoints=(1, 2),
                           bn_recalib_batches=1)
    decay = 0.75
    averaged = replace(plain, oneshot_ema=decay)
    assert _key(averaged) != _key(plain) == _key(replace(plain, oneshot_ema=0.0))  # old keys kept
    p_plain, p_avg = Profile(name="plain", supernet=plain), Profile(name="avg", supernet=averaged)
    run = T.trained_supernet(p_avg, 0)
    raw = {s: T.supernet_at_steps(p_avg, 0, s, raw=True).model.state_dict() for s in (1, 2)}
    own = {s: T.supernet_at_steps(p_plain, 0, s).model.state_dict() for s in (1, 2)}
    _assert_equal_nested(raw, own)  # the average never changed a step
    assert T.supernet_at_steps(p_plain, 0, 2, raw=True).model is T.supernet_at_steps(p_plain, 0, 2).model
    loads = []
    real_load = T.load_checkpoint
    monkeypatch.setattr(T, "load_checkpoint", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    at2 = T.supernet_at_steps(p_avg, 0, 2)
    assert loads == []  # the raw arm's load above memoised the average too
    names = dict(at2.model.named_parameters())
    assert at2.key != T.supernet_at_steps(p_avg, 0, 2, raw=True).key
    moved = 0
    for name, value in at2.model.state_dict().items():
        if name in names:  # parameters: decay * (step 1) + (1 - decay) * (step 2)
            torch.testing.assert_close(value, decay * raw[1][name] + (1 - decay) * raw[2][name])
            moved += not torch.equal(value, raw[2][name])
        else:  # buffers (BN statistics) are the raw run's
            assert torch.equal(value, raw[2][name]), name
    assert moved > 0
    at4 = T.supernet_at_steps(p_avg, 0, 4)  # the last one-shot step
    _assert_equal_nested(run.model.state_dict(), at4.model.state_dict())  # the phase ended on the average
    assert not torch.equal(run.model.bottleneck.weight, T.supernet_at_steps(p_avg, 0, 4, raw=True).model.bottleneck.weight)
    with pytest.raises(ValueError, match="oneshot_ema needs supernet.bn_recalib_batches > 0"):
        T.new_search_state(replace(averaged, bn_recalib_batches=0), 0)
    _snapshots_in_memory_equal_the_saved_ones(p_avg, tmp_path, monkeypatch)


def _snapshots_in_memory_equal_the_saved_ones(profile, folder, monkeypatch):
    """snapshots_on_disk False: each count replayed, both arms equal to the saved snapshots, no file written."""
    in_memory = Profile(name=profile.name, supernet=replace(profile.supernet, snapshots_on_disk=False))
    for steps, raw in ((1, True), (2, False), (3, True)):
        monkeypatch.setattr(T, "_MEMO", {})  # the two share a key: each read afresh
        monkeypatch.setattr(T, "cache_dir", lambda *parts: folder / "unused")
        replayed = T.supernet_at_steps(in_memory, 0, steps, raw=raw)
        monkeypatch.setattr(T, "_MEMO", {})
        monkeypatch.setattr(T, "cache_dir", lambda *parts: folder)
        saved = T.supernet_at_steps(profile, 0, steps, raw=raw)
        assert replayed.model is not saved.model and replayed.key == saved.key and replayed.weight_steps == steps
        _assert_equal_nested(replayed.model.state_dict(), saved.model.state_dict())
        assert [h["train_loss"] for h in replayed.history] == [h["train_loss"] for h in saved.history]
    assert not (folder / "unused").exists()
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"supernet.oneshot_ema must lie in \[0, 1\)"):
            T.one_shot_average(tiny_supernet(), bad)


def test_a_training_replica_draws_another_stream_of_the_seed():
    cfg = SupernetConfig()
    states = {r: T.new_search_state(replace(cfg, replica=r), 0) for r in (0, 1, 2)}
    again = T.new_search_state(replace(cfg, replica=1), 0)
    weights = {r: s.model.bottleneck.weight for r, s in states.items()}
    assert torch.equal(weights[1], again.model.bottleneck.weight)  # a replica is reproducible
    own = np.random.default_rng([0, T.SUPERNET_STREAM])  # replica 0 is the stream runs had before replicas
    reference = T.seeded_module(Supernet, torch.Generator().manual_seed(int(own.integers(2**62))))
    assert torch.equal(weights[0], reference.bottleneck.weight)
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert states[0].rng.integers(1 << 30) != states[1].rng.integers(1 << 30)  # batch order too
    with pytest.raises(ValueError, match="replica = -1 must be >= 0"):
        replace(cfg, replica=-1)


# ------------------------------------------------------------------ training length


def test_updates_per_choice_known_values():
    cfg = SupernetConfig(warmup_epochs=3, batch_size=4)  # 10 images: 3 steps per epoch, 9 steps
    uniform = O.updates_per_choice(cfg, 10)
    assert uniform["weight_steps"] == 9 and uniform["paths_per_step"] == 1
    assert uniform["min"] == pytest.approx(9 / 21) and uniform["per_layer"] == pytest.approx([9 / 21] * 5)
    sandwich = O.updates_per_choice(replace(cfg, sampling="sandwich", sandwich_random=2), 10)
    assert sandwich["paths_per_step"] == 4 and sandwich["min"] == pytest.approx(9 * (1 - (20 / 21) ** 2))
    assert O.updates_per_choice(replace(cfg, sampling="sandwich", sandwich_random=0), 10)["min"] == 0
    assert O.updates_per_choice(replace(cfg, warmup_epochs=0), 10)["weight_steps"] == 0
    assert O.epochs_for_updates(replace(cfg, sampling="uniform"), 12, 1.0) == 7  # 3 steps/epoch: 21 steps
    with pytest.raises(ValueError, match="sampling"):
        O.updates_per_choice(replace(cfg, sampling="spos"), 10)


def test_counted_updates_follow_the_sandwich_rule(tiny_training):
    cfg = SupernetConfig(warmup_epochs=2, epochs=0, batch_size=2, sampling="sandwich", sandwich_random=0)
    state = T.train_supernet(cfg, 0, _tiny_split(4, 91), _tiny_split(2, 92), None)
    counts = state.choice_updates
    big, small = largest_path(), smallest_path(state.rule.counts)
    assert state.weight_steps == 4 and (counts[np.arange(5), big] == 4).all() and (counts[np.arange(5), small] == 4).all()
    assert counts.sum() == 4 * 2 * 5 and state.history[-1]["choice_updates_min"] == 0
    assert state.history[-1]["updates_per_choice"] == 0 and state.history[0]["phase"] == "warmup"
    with pytest.raises(ValueError, match="sampling = 'spos' must be one of uniform, sandwich"):
        replace(cfg, sampling="spos")
    assert RES == 32


def test_the_supernet_memo_keeps_only_the_most_recently_used(monkeypatch):
    monkeypatch.setattr(T, "_MEMO", {})
    for i in range(T.MEMO_LIMIT):
        T._remember(f"k{i}", f"supernet {i}")
    assert T._recall("k0") == "supernet 0"  # now the most recent: k1 is the oldest
    T._remember("new", "supernet new")
    assert len(T._MEMO) == T.MEMO_LIMIT and T._recall("k1") is None
    assert T._recall("k0") == "supernet 0" and T._recall("new") == "supernet new"


def test_table_scores_are_cached_by_key_weights_and_architectures(monkeypatch, tmp_path, tiny_training, caplog):
    """A table's WS scores are read back to every digit, keyed by the weights too; a damaged
    file is scored again; one architecture is not cached."""
    features = Features({"train": _tiny_split(4, 81), "val": _tiny_split(2, 82)}, SimpleNamespace(weights_id="w"), {})
    monkeypatch.setattr(T, "_run_inputs", _fake_run_inputs(features))
    cfg = SupernetConfig(warmup_epochs=1, epochs=0, batch_size=2, sandwich_random=0, bn_recalib_batches=1)
    profile = Profile(name="tiny", supernet=cfg)
    choices = np.array([[0, 4, 8, 12, 20], [1, 5, 9, 13, 17], [2, 2, 2, 2, 2]])
    first = T.trained_supernet(profile, 0).ws_scores(choices)
    assert len(list(tmp_path.glob("scores_*.json"))) == 1 and set(first) == set(SCORES)

    real, calls = WeightSharingEvaluator.scores, []
    monkeypatch.setattr(WeightSharingEvaluator, "scores",
                        lambda self, c: calls.append(len(np.atleast_2d(c))) or real(self, c))
    monkeypatch.setattr(T, "_MEMO", {})
    again = T.trained_supernet(profile, 0)  # loaded from its checkpoint: the same weights
    _same_scores(again.ws_scores(choices), first)
    assert calls == []  # read back, not scored
    again.ws_scores(choices[:2])
    again.ws_scores(choices[0])
    assert calls == [2, 1] and len(list(tmp_path.glob("scores_*.json"))) == 2  # one architecture: not cached

    def fresh(model):
        return T.TrainedSupernet(model, again.history, again.features, again.cfg, again.latency, again.key)

    moved = copy.deepcopy(again.model)
    with torch.no_grad():
        moved.bottleneck.weight.add_(0.5)
    fresh(moved).ws_scores(choices)  # same key, other weights: scored again
    assert calls[-1] == 3 and len(list(tmp_path.glob("scores_*.json"))) == 3
    for path in tmp_path.glob("scores_*.json"):
        path.write_text("{")
    _same_scores(fresh(again.model).ws_scores(choices), first)  # damaged: scored again, to the same numbers
    assert calls[-1] == 3 and "unreadable" in caplog.text

    def full_disk(path, data, indent=None):
        raise WriteError(f"could not write {path}: no space")

    monkeypatch.setattr(T, "atomic_write_json", full_disk)
    n_files = len(list(tmp_path.glob("scores_*.json")))
    got = fresh(moved).ws_scores(choices[::-1])  # another table, whose write fails
    assert got["miou"].shape == (3,) and calls[-1] == 3 and len(calls) == 5
    assert "WS scores not cached" in caplog.text and len(list(tmp_path.glob("scores_*.json"))) == n_files


def _same_scores(a: dict, b: dict) -> None:
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in b)
