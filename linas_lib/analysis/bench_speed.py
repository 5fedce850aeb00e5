"""How fast one standalone training step runs on cached taps, under the variants worth trying.

The benchmark table is hours of CPU, so its training loop should take what pays on the
machine. :func:`profile_training_step` times the full step (batch gather from the float16
cache, forward, segmentation loss, backward, Adam step) of a small, a mid and a large
decoder, side by side in one run with ``torch.utils.benchmark.Timer.blocked_autorange``,
for each thread count x batch size x variant:

* ``baseline``: the loop of :func:`linas_lib.supernet.standalone.train_decoder` (Adam with
  torch's default implementation; on CPU tensors that is the per-parameter for-loop);
* ``foreach``: ``Adam(foreach=True)`` (multi-tensor kernels);
* ``fused``: ``Adam(fused=True)`` (one fused kernel, CPU support since torch 2.4);
* ``f32_taps``: taps converted to float32 once (no per-batch float16 -> float32 copy);
* ``compile`` (opt-in, not in :data:`DEFAULT_VARIANTS`): ``torch.compile`` of the decoder;
  compilation takes tens of seconds per network, its warm-up calls are not timed.

A variant that fails (e.g. an optimizer option this torch lacks) gives a row with NaN times
and the error, so one run always returns every row.
"""

from __future__ import annotations

import math

import numpy as np

from ..space import arch_string, parse_arch
from .bench import (bench_profile, named_architectures, reference_model, reference_target, select_architectures,
                    torch_threads)

VARIANTS = ("baseline", "foreach", "fused", "f32_taps", "compile")
DEFAULT_VARIANTS = ("baseline", "foreach", "fused", "f32_taps")
SPEED_STREAM = 0x5EED


def default_archs(profile, seed: int = 0, model=None) -> dict[str, str]:
    """``small`` (the reference target's fastest), ``mid`` (the selection's median predicted
    latency) and ``large`` (every layer Conv7x7_w100) architecture strings."""
    model = model if model is not None else reference_model(profile)
    named = named_architectures(model, reference_target(profile))
    selection = sorted(select_architectures(profile, seed, model), key=lambda r: r["predicted_ms"])
    return {"small": arch_string(named["smallest"]), "mid": selection[len(selection) // 2]["arch"],
            "large": arch_string(named["largest"])}


def profile_training_step(profile, archs=None, batch_sizes=(2, 4, 8), threads=(1, 2),
                          variants=DEFAULT_VARIANTS, seed: int = 0, features=None,
                          min_run_time: float = 2.0) -> list[dict]:
    """Time decoder training steps on cached features, every variant side by side.

    Args:
        profile: a :class:`~linas_lib.config.Profile` (bench section, data, reference target).
        archs: ``{name: arch string}`` or a list of arch strings (default :func:`default_archs`).
        batch_sizes: batch sizes to time.
        threads: torch thread counts to time.
        variants: from :data:`VARIANTS`.
        seed: decoder initialisation and batch draws; also the selection seed of ``default_archs``.
        features: a train :class:`~linas_lib.encoder.features.FeatureSplit` (default: the
            table's cached train split).
        min_run_time: seconds of ``blocked_autorange`` per row.

    Returns:
        One row per (arch, threads, batch size, variant): ``arch``, ``arch_name``, ``variant``,
        ``threads``, ``batch_size``, ``ms_per_step`` (median), ``ms_per_image``, ``iqr`` (ms),
        ``n`` (steps timed), ``error`` (empty when it ran).

    Raises:
        ValueError: an unknown variant.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown training-step variant(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(VARIANTS)}")
    archs = _named(archs if archs is not None else default_archs(profile, seed))
    train = features if features is not None else _train_features(profile, seed)
    rows = []
    for name, arch in archs.items():
        for n_threads in threads:
            for batch_size in batch_sizes:
                for variant in variants:
                    rows.append(_time_variant(name, arch, variant, int(n_threads), int(batch_size), train, seed,
                                              min_run_time))
    return rows


def _named(archs) -> dict[str, str]:
    if isinstance(archs, dict):
        return {str(k): arch_string(parse_arch(v)) for k, v in archs.items()}
    return {a: arch_string(parse_arch(a)) for a in archs}


def _train_features(profile, seed: int):
    from ..encoder.features import run_features

    return run_features(bench_profile(profile), seed)["train"]


def _time_variant(name: str, arch: str, variant: str, n_threads: int, batch_size: int, train, seed: int,
                  min_run_time: float) -> dict:
    """One row: the variant's step timed with ``blocked_autorange`` (NaN and the error if it fails)."""
    from torch.utils.benchmark import Timer

    row = {"arch_name": name, "arch": arch, "variant": variant, "threads": n_threads, "batch_size": batch_size}
    try:
        with torch_threads(n_threads):
            step = make_step(arch, variant, batch_size, train, seed)
            step(), step()  # warm-up (and compilation) untimed
            m = Timer("step()", globals={"step": step}, num_threads=n_threads, label=arch,
                      description=variant).blocked_autorange(min_run_time=min_run_time)
    except Exception as err:  # noqa: BLE001 -- a variant this machine lacks is a row, not a crash
        return row | {"ms_per_step": math.nan, "ms_per_image": math.nan, "iqr": math.nan, "n": 0,
                      "error": f"{type(err).__name__}: {err}"}
    ms = 1e3 * m.median
    return row | {"ms_per_step": ms, "ms_per_image": ms / batch_size, "iqr": 1e3 * m.iqr,
                  "n": len(m.times) * m.number_per_run, "error": ""}


def make_step(arch: str, variant: str, batch_size: int, train, seed: int):
    """A closure running one training step of a fresh decoder under ``variant``."""
    import torch

    from ..encoder.features import FeatureSplit
    from ..keys import rng_for, torch_generator
    from ..losses import segmentation_terms
    from ..supernet.standalone import new_decoder

    decoder = new_decoder(parse_arch(arch), torch_generator(rng_for(seed, SPEED_STREAM)))
    options = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(variant, {})
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3, **options)
    forward = torch.compile(decoder) if variant == "compile" else decoder
    if variant == "f32_taps":
        train = FeatureSplit(tuple(t.float() for t in train.taps), train.masks, train.names)
    rng = rng_for(seed, SPEED_STREAM + 1)
    decoder.train()

    def step() -> None:
        taps, masks = train.batch(rng.integers(0, len(train), batch_size))
        loss = sum(segmentation_terms(forward(taps), masks).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def speed_table(rows: list[dict]) -> list[dict]:
    """Each row with ``speedup``: baseline ms per step / its ms per step, same arch, threads, batch."""
    base = {(r["arch"], r["threads"], r["batch_size"]): r["ms_per_step"] for r in rows if r["variant"] == "baseline"}
    out = []
    for r in rows:
        ref = base.get((r["arch"], r["threads"], r["batch_size"]), math.nan)
        out.append(r | {"speedup": ref / r["ms_per_step"] if r["ms_per_step"] and np.isfinite(r["ms_per_step"])
                        else math.nan})
    return out
