"""A profile's hardware targets turned into LUTs and budgets.

Each target of ``latency.targets`` has a LUT: ``local`` targets are measured on this machine
(``linas lut build``, cached under ``.cache/luts``) unless the profile names a committed LUT
file of the paper's machine; ``gpu`` and ``external`` targets read the file their ``lut:``
names. :func:`latency_model` returns the :class:`~.predict.LatencyModel` over every target
with its resolved budget (a fixed ``budget_ms`` or a quantile of the target's predicted
latency over the space).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import Profile, load_profile
from ..keys import content_hash
from ..paths import cache_dir, resolve
from ..space import all_archs
from . import lut as L
from .predict import LatencyModel, model_from_luts


def latency_model(profile, variant: str = "interaction", targets=None, build_missing: bool = True,
                  progress: bool = True) -> LatencyModel:
    """Every available target of a profile as one :class:`LatencyModel`.

    Local targets' LUTs are loaded from the cache (``.cache/luts``, keyed by a hash of
    target, resolution, measurement settings and search space) and measured here if absent.
    GPU targets whose LUT file is absent and external targets whose file is absent are left
    out (see :func:`target_status` for why).

    Args:
        profile: a :class:`linas_lib.config.Profile` or a profile name/path.
        variant: ``op_only``, ``projected`` or ``interaction``.
        targets: restrict to these target names (default: all available).
        build_missing: measure absent local LUTs (else they are left out).
        progress: tqdm bars while measuring.
    """
    profile = _as_profile(profile)
    luts = {}
    for target in profile.latency.targets:
        if targets is not None and target.name not in targets:
            continue
        lut = load_target_lut(profile, target, build_missing, progress)
        if lut is not None:
            luts[target.name] = lut
    if not luts:
        raise ValueError(f"profile {profile.name!r}: no target has a LUT")
    return model_from_luts(luts, profile_budgets(profile, luts), variant)


def profile_budgets(profile, luts: dict[str, dict]) -> dict[str, float]:
    """Each target's budget (ms): ``budget_ms``, or -- where ``budget_quantile > 0`` -- that
    quantile of the target's interaction-corrected predicted latency over every 7th
    architecture of the space (the same for every variant, so variants compare fairly)."""
    budgets, by_quantile = {}, {}
    for target in profile.latency.targets:
        if target.name in luts:
            budgets[target.name] = float(target.budget_ms)
            if target.budget_quantile > 0:
                if not target.budget_quantile < 1:
                    raise ValueError(f"target {target.name!r}: budget_quantile must lie in (0, 1)")
                by_quantile[target.name] = target.budget_quantile
    if by_quantile:
        names = list(by_quantile)
        model = model_from_luts({n: luts[n] for n in names}, {n: 0.0 for n in names}, "interaction")
        pred = model.predict(all_archs()[::7])
        for i, name in enumerate(names):
            budgets[name] = float(np.quantile(pred[:, i], by_quantile[name]))
    return budgets


def _as_profile(profile):
    return profile if isinstance(profile, Profile) else load_profile(profile)


def target_status(profile, target) -> str:
    """``measured``, ``cached``, ``to build``, ``not measured`` or ``absent`` for one target."""
    profile = _as_profile(profile)
    path = target_lut_path(profile, target)
    if target.kind == "local":
        return "cached" if path.is_file() else "to build"
    if path.is_file():
        return "measured"
    return "not measured" if target.kind == "gpu" else "absent"


def target_lut_path(profile, target) -> Path:
    """Where a target's LUT is (gpu/external: the profile path; local: the cache)."""
    if target.kind in ("gpu", "external"):
        if not target.lut:
            raise ValueError(f"profile {profile.name!r}: target {target.name!r} ({target.kind}) needs a 'lut' path")
        return resolve(target.lut)
    if target.kind != "local":
        raise ValueError(f"target {target.name!r}: unknown kind {target.kind!r} (local, gpu, external)")
    return cache_dir("luts") / f"{target.name}_{profile.data.resolution}px_{lut_cache_key(profile, target)}.json"


def lut_cache_key(profile, target) -> str:
    """Hash of what a local LUT depends on: target, resolution, measure settings, space."""
    lat = profile.latency
    return content_hash({"target": target.name, "resolution": profile.data.resolution, "measure": lat.measure,
                         "pairs_per_slot": lat.pairs_per_slot, "lut_choices": lat.lut_choices,
                         "space": L.space_block()["fingerprint"], "schema": L.SCHEMA_VERSION}, 12)


def load_target_lut(profile, target, build_missing: bool = True, progress: bool = True) -> dict | None:
    """One target's LUT: loaded (resolution checked), built if local and absent, else None."""
    profile = _as_profile(profile)
    path = target_lut_path(profile, target)
    resolution = profile.data.resolution
    if path.is_file():
        return L.load_lut(path, resolution)
    if target.kind != "local" or not build_missing:
        return None
    return L.build_lut(target.name, resolution, profile.latency.measure, path,
                       pairs_per_slot=profile.latency.pairs_per_slot, progress=progress,
                       choices=list(profile.latency.lut_choices) or None)
