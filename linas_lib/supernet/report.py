"""Experiments of notebook 03 on a trained supernet: cache speed-up, binarised memory,
per-target searched architectures, standalone comparison with the largest subnet.

* :func:`measure_cache_speedup`: the same ``measure_batches`` uniform single-path training
  steps timed twice, once recomputing the frozen encoder from the images (pre-processing +
  encoder forward) and once reading the cached taps; ratio of the two times.
* :func:`measure_memory_ratio`: activation memory of one binarised training step over that of
  one full-mixture (``soft``) step on the same batch. On CPU: bytes of the tensors autograd
  saves for backward (``torch.autograd.graph.saved_tensors_hooks``), deduplicated by storage,
  parameters excluded. On CUDA: ``torch.cuda.max_memory_allocated`` growth over the step.
* the PAD study (annealed vs constant Gumbel temperature) is :mod:`linas_lib.supernet.pad`.
* :func:`per_target_architectures`: one joint search serves every target (C2): its argmax
  architecture, and per target the most probable architecture within that target's budget
  (greedy from the argmax: swap the layer choice that gives up the least log-probability per
  ms saved until the target's predicted latency is within budget).
* :func:`standalone_comparison`: the searched and the largest (``Conv7x7_w100`` everywhere)
  networks trained standalone the same way, mIoU on the test split.

Nothing here changes the trained supernet ``ts.model``: whatever trains or runs in train
mode (cache timing, memory tracing, the PAD study) works on a deep copy
(:meth:`~.train.TrainedSupernet.copy_model`); evaluations run in eval mode under
``torch.no_grad`` and restore the previous mode. So every later figure of notebook 03 reads
the model that training produced.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..space import N_LAYERS, arch_string
from .evaluate import evaluate_decoder
from .model import Supernet, extract_decoder, largest_path
from .standalone import new_decoder, train_decoder
from .train import TrainedSupernet, weight_step

LARGEST = largest_path()
EXPERIMENT_STREAM = 0x03E


def _time_steps(model: Supernet, batches, get_taps, seed: int) -> float:
    """Seconds for uniform single-path weight steps over ``batches`` (taps from ``get_taps``)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.0)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        taps, masks = get_taps(batch)
        weight_step(model, opt, taps, masks, "uniform", 1.0, gen, f"cache timing step {i}")
    return time.perf_counter() - start


def measure_cache_speedup(ts: TrainedSupernet, profile, seed: int, splits: dict) -> dict:
    """Training-step time recomputing the encoder vs reading the cache (same steps, same paths).

    Returns:
        ``{"seconds_recompute", "seconds_cached", "cache_speedup", "images"}``.
    """
    from ..data import preprocess
    from ..encoder import frozen_encoder

    train_ds, train = splits["train"], ts.features["train"]
    device = train.masks.device
    encoder = frozen_encoder(profile, seed, splits)[0].to(device)
    bs = ts.cfg.batch_size
    idx = [np.arange(lo, min(lo + bs, len(train))) for lo in range(0, len(train), bs)][: ts.cfg.measure_batches]
    model = ts.copy_model()

    def recompute(i):
        with torch.no_grad():
            taps = encoder(preprocess(train_ds.images[i]).to(device))
        return taps, torch.from_numpy(train_ds.masks[i]).long().to(device)

    _time_steps(model, idx[:1], train.batch, seed)  # warm-up of both code paths
    _time_steps(model, idx[:1], recompute, seed)
    slow = _time_steps(model, idx, recompute, seed)
    fast = _time_steps(model, idx, train.batch, seed)
    return {"seconds_recompute": slow, "seconds_cached": fast, "cache_speedup": slow / fast,
            "images": int(sum(len(i) for i in idx))}


def measure_memory_ratio(ts: TrainedSupernet) -> dict:
    """Activation memory of a binarised step / a full-mixture step (see the module docstring).

    One batch of ``supernet.pad_batch_size`` train images, on a deep copy of the supernet:
    the train-mode passes would otherwise move the trained model's (cumulative) BN statistics.
    """
    model, batch_size = ts.copy_model(), ts.cfg.pad_batch_size
    taps, masks = ts.features["train"].batch(np.arange(min(batch_size, len(ts.features["train"]))))
    out = {"memory_method": "cuda.max_memory_allocated" if taps[0].is_cuda else "saved_tensors_hooks"}
    for mode in ("binarised", "soft"):
        out[f"bytes_{mode}"] = _step_bytes(model, taps, masks, mode)
    out["binarised_mem_ratio"] = out["bytes_binarised"] / out["bytes_soft"]
    return out


def _step_bytes(model: Supernet, taps, masks, mode: str) -> int:
    """Activation bytes of one training step in ``mode``.

    CPU: bytes autograd saves for backward during the forward pass (what the backward keeps
    alive). CUDA: growth of the peak allocation over forward and backward.
    """
    from ..losses import segmentation_loss

    gen = torch.Generator().manual_seed(0)
    model.train()
    if taps[0].is_cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        segmentation_loss(model(taps, mode=mode, tau=1.0, generator=gen), masks).backward()
        torch.cuda.synchronize()
        model.zero_grad(set_to_none=True)
        return int(torch.cuda.max_memory_allocated() - base)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    # autograd saves tensors during the forward pass, so the backward need not run
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = segmentation_loss(model(taps, mode=mode, tau=1.0, generator=gen), masks)
    del loss
    return int(sum(seen.values()))


def budgeted_architecture(probs: np.ndarray, latency_model, target: int) -> tuple[np.ndarray, bool]:
    """Most probable architecture within one target's budget, greedily from the argmax.

    Args:
        probs: ``(5, 21)`` joint probabilities.
        latency_model: a :class:`~linas_lib.latency.predict.LatencyModel`.
        target: index of the target.

    Returns:
        ``(choices, meets_budget)``.
    """
    logp = np.log(np.clip(probs, 1e-12, None))
    arch = probs.argmax(axis=1).astype(np.int64)
    budget = float(latency_model.budgets_ms[target])
    lat = float(latency_model.predict(arch)[target])
    while lat > budget:
        cands = np.repeat(arch[None], N_LAYERS * probs.shape[1], axis=0)
        layers, choices = np.divmod(np.arange(len(cands)), probs.shape[1])
        cands[np.arange(len(cands)), layers] = choices
        saved = lat - latency_model.predict(cands)[:, target]
        cost = logp[np.arange(N_LAYERS), arch][layers] - logp[layers, choices]
        score = np.where(saved > 1e-9, saved / (np.maximum(cost, 0) + 1e-6), -np.inf)
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        arch, lat = cands[best], lat - saved[best]
    return arch, bool(lat <= budget)


def per_target_architectures(ts: TrainedSupernet, latency_model) -> list[dict]:
    """The joint search's argmax and, per target, its budgeted architecture (see module docstring)."""
    probs = ts.joint_probs()
    joint = ts.argmax()
    joint_lat = latency_model.predict(joint)
    rows = []
    _, fastest_ms = latency_model.fastest()
    for t, name in enumerate(latency_model.target_names):
        arch, meets = budgeted_architecture(probs, latency_model, t)
        min_ms = float(fastest_ms[t])
        rows.append({
            "target": name, "budget_ms": float(latency_model.budgets_ms[t]), "min_ms": min_ms,
            "feasible": bool(min_ms <= latency_model.budgets_ms[t]),
            "argmax_ms": float(joint_lat[t]), "argmax_meets_budget": bool(joint_lat[t] <= latency_model.budgets_ms[t]),
            "architecture": arch_string(arch), "predicted_ms": float(latency_model.predict(arch)[t]),
            "meets_budget": meets, "ws_miou": float(ts.evaluator.evaluate(arch)[0]),
        })
    return rows


def standalone_comparison(ts: TrainedSupernet, archs: dict[str, np.ndarray], seed: int) -> list[dict]:
    """Train each named architecture standalone the same way; mIoU on the test split.

    ``supernet.standalone_init`` decides the start: ``scratch`` (initialisation from the
    run's generator) or ``supernet`` (the path's shared weights).
    """
    cfg, rows = ts.cfg, []
    for name, choices in archs.items():
        gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, EXPERIMENT_STREAM, 2]).integers(2**62)))
        if cfg.standalone_init == "supernet":
            decoder = extract_decoder(ts.model, choices)
        elif cfg.standalone_init == "scratch":
            decoder = new_decoder(choices, gen).to(ts.features["train"].masks.device)
        else:
            raise ValueError(f"supernet.standalone_init must be 'scratch' or 'supernet', got {cfg.standalone_init!r}")
        start = time.perf_counter()
        history = train_decoder(decoder, ts.features["train"], cfg.standalone_epochs, cfg.standalone_lr,
                                cfg.batch_size, np.random.default_rng([seed, EXPERIMENT_STREAM, 3]), label=name)
        rows.append({
            "network": name, "architecture": arch_string(choices), "init": cfg.standalone_init,
            "epochs": cfg.standalone_epochs, "final_train_loss": history[-1]["loss"] if history else None,
            "val_miou": evaluate_decoder(decoder, ts.features["val"], cfg.batch_size),
            "test_miou": evaluate_decoder(decoder, ts.features["test"], cfg.batch_size),
            "params": int(sum(p.numel() for p in decoder.parameters())),
            "train_seconds": time.perf_counter() - start,
        })
    return rows


def history_rows(ts: TrainedSupernet) -> list[dict]:
    """Flat per-epoch rows of the training history (probabilities left out)."""
    rows = []
    for h in ts.history:
        row = {k: v for k, v in h.items() if k not in ("p_op", "p_width", "expected_ms", "argmax")}
        row["argmax"] = arch_string(h["argmax"])
        row.update({f"expected_ms.{k}": v for k, v in h["expected_ms"].items()})
        rows.append(row)
    return rows


def summary_figures(speed: dict, memory: dict, targets: list[dict], standalone: list[dict],
                    ts: TrainedSupernet) -> dict[str, float]:
    """The flat ``summary.json`` figures of notebook 03 (see the notebook for definitions;
    the PAD study's are :func:`linas_lib.supernet.pad.pad_figures`)."""
    by_net = {row["network"]: row for row in standalone}
    feasible = [row for row in targets if row["feasible"]]
    out = {
        "cache_speedup": speed["cache_speedup"],
        "binarised_mem_ratio": memory["binarised_mem_ratio"],
        "miou.searched": by_net["searched"]["test_miou"],
        "miou.largest": by_net["largest"]["test_miou"],
        "miou.searched_minus_largest_points": 100 * (by_net["searched"]["test_miou"] - by_net["largest"]["test_miou"]),
        "searched.share_targets_within_budget": float(np.mean([r["argmax_meets_budget"] for r in targets])),
        "searched.share_feasible_targets_within_budget":
            float(np.mean([r["argmax_meets_budget"] for r in feasible])) if feasible else None,
        "per_target.share_within_budget": float(np.mean([r["meets_budget"] for r in targets])),
        "targets.feasible": float(len(feasible)),
        "targets.total": float(len(targets)),
        "supernet.ws_miou_argmax_final": ts.history[-1]["ws_miou_argmax"],
        "supernet.train_seconds": float(sum(h["seconds"] for h in ts.history)),
        "params.searched": float(by_net["searched"]["params"]),
        "params.largest": float(by_net["largest"]["params"]),
    }
    return out
