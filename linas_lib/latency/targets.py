"""A profile's hardware targets turned into LUTs and budgets.

Each target of ``latency.targets`` has a LUT: ``local`` targets are measured on this machine
(``linas lut build``, cached under ``.cache/luts``) unless the profile names a committed LUT
file of the paper's machine; ``gpu`` and ``external`` targets read the file their ``lut:``
names. :func:`latency_model` returns the :class:`~.predict.LatencyModel` over every target
with its resolved budget (a fixed ``budget_ms`` or a quantile of the target's predicted
latency over the space).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Profile, load_profile
from ..keys import content_hash, key_fields
from ..paths import cache_dir, display_path, resolve
from ..space import all_archs
from . import lut as L
from .predict import LatencyModel, model_from_luts

log = logging.getLogger(__name__)


def latency_model(profile, variant: str = "interaction", targets=None, here: bool = False,
                  progress: bool = True) -> LatencyModel:
    """Every target of a profile as one :class:`LatencyModel` (see :func:`load_luts`).

    Args:
        profile: a :class:`linas_lib.config.Profile` or a profile name/path.
        variant: ``op_only``, ``projected``, ``interaction`` or ``calibrated`` (LUTs with
            calibration blocks only: their quantile budgets are in measured ms, so another
            variant's predictions would be read against a budget of another scale).
        targets: restrict to these target names (default: all).
        here: local targets measured on this machine instead of their committed LUTs.
        progress: tqdm bars while measuring.

    Raises:
        ValueError: unknown targets, none with a LUT, or calibrated LUTs with quantile budgets
            and another ``variant``.
    """
    profile = _as_profile(profile)
    if targets is not None:
        known = [t.name for t in profile.latency.targets]
        unknown = [n for n in targets if n not in known]
        if unknown:
            raise ValueError(f"profile {profile.name!r}: unknown target(s) {', '.join(map(repr, unknown))}; "
                             f"the profile has {', '.join(known) or 'no targets'}")
    luts = {n: lut for n, lut in load_luts(profile, here, progress).items() if targets is None or n in targets}
    if not luts:
        wanted = [t for t in profile.latency.targets if targets is None or t.name in targets]
        left_out = "; ".join(f"{t.name}: {target_lut_path(profile, t, here)} does not exist (optional: left out)"
                             for t in wanted)
        raise ValueError(f"profile {profile.name!r}: no target has a LUT"
                         + (f" -- {left_out}" if left_out else " (latency.targets is empty)"))
    quantile = [t.name for t in profile.latency.targets if t.name in luts and t.budget_quantile > 0]
    if quantile and variant != "calibrated" and budget_variant(luts) == "calibrated":
        raise ValueError(f"profile {profile.name!r}: the LUTs carry calibration blocks, so the quantile budgets of "
                         f"{', '.join(quantile)} are in measured ms (the calibrated prediction); variant {variant!r} "
                         "would be read against them: ask for variant 'calibrated'")
    return model_from_luts(luts, profile_budgets(profile, luts), variant)


def load_luts(profile, here: bool = False, progress: bool = True) -> dict[str, dict]:
    """Each target's LUT keyed by target name, in profile order.

    Local targets read the committed LUT their ``lut:`` names (the paper's machine), so
    budgets and every non-timing figure are the same on any machine; with ``here`` (or no
    ``lut:``) they are measured on this machine and cached. Optional targets whose file is
    absent (a GPU not measured yet) are left out with a warning; any other missing file is
    an error.
    """
    profile = _as_profile(profile)
    luts = {}
    for target in profile.latency.targets:
        lut = load_target_lut(profile, target, here, progress)
        if lut is not None:
            luts[target.name] = lut
    return luts


def profile_budgets(profile, luts: dict[str, dict]) -> dict[str, float]:
    """Each target's budget (ms): ``budget_ms``, or -- where ``budget_quantile > 0`` -- that
    quantile of the target's predicted latency over every 7th architecture of the space (the
    same for every variant, so variants compare fairly).

    The quantile is read off the best prediction of what the pipeline measures
    (:func:`budget_variant`): the ``calibrated`` one where the LUTs carry calibration blocks
    (notebook 02's own LUTs), else ``interaction``. A budget read off an uncalibrated sum sits
    below the measured latencies by the fixed costs the sum misses (on 02's Intel run the
    cpu-torch-2t budget lay below every measured architecture, so no calibrated prediction fell
    within it). An affine calibration with a positive slope keeps the order, so the quantile's
    feasible set is the base variant's either way; only the budget in ms moves.
    """
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
        model = model_from_luts({n: luts[n] for n in names}, {n: 0.0 for n in names}, budget_variant(luts))
        pred = model.predict(all_archs()[::7])
        for i, name in enumerate(names):
            budgets[name] = float(np.quantile(pred[:, i], by_quantile[name]))
    return budgets


def budget_variant(luts: dict[str, dict]) -> str:
    """The variant quantile budgets are read off (:func:`profile_budgets`): ``calibrated`` when
    every end-to-end LUT carries a calibration block, else ``interaction``. The same rule
    decides whether :func:`linas_lib.latency.report.models_for` offers the calibrated variant."""
    end_to_end = [lut for lut in luts.values() if lut["scope"] != "decoder-only"]
    return "calibrated" if all("calibration" in lut for lut in end_to_end) and end_to_end else "interaction"


def _as_profile(profile):
    return profile if isinstance(profile, Profile) else load_profile(profile)


def target_status(profile, target, here: bool = False) -> str:
    """``committed``, ``measured``, ``cached``, ``to build`` or ``not measured`` for one target."""
    profile = _as_profile(profile)
    path = target_lut_path(profile, target, here)
    if measures_here(target, here):
        return "cached" if path.is_file() else "to build"
    if path.is_file():
        return "committed" if target.kind == "local" else "measured"
    return "not measured"


def measures_here(target, here: bool = False) -> bool:
    """Whether a target's LUT is measured on this machine (local, and ``here`` or no ``lut:``)."""
    return target.kind == "local" and (here or not target.lut)


def target_lut_path(profile, target, here: bool = False) -> Path:
    """Where a target's LUT is: the profile's ``lut:`` path, or this machine's cache."""
    if measures_here(target, here):
        key = lut_cache_key(profile, target)
        return cache_dir("luts") / f"{target.name}_{profile.data.resolution}px_{key}.json"
    if not target.lut:
        raise ValueError(f"profile {profile.name!r}: target {target.name!r} ({target.kind}) needs a 'lut' path")
    return resolve(target.lut)


def lut_cache_key(profile, target) -> str:
    """Hash of what a local LUT depends on: target, resolution, measure settings, space.

    The measure settings enter by :func:`~linas_lib.keys.key_fields` in the form a whole
    dataclass hashes to, so a setting added later at its default keeps the keys of LUTs
    cached before it existed.
    """
    lat = profile.latency
    measure = {"__dataclass__": type(lat.measure).__name__, **key_fields(lat.measure)}
    return content_hash({"target": target.name, "resolution": profile.data.resolution, "measure": measure,
                         "pairs_per_slot": lat.pairs_per_slot, "lut_choices": lat.lut_choices,
                         "space": L.space_block()["fingerprint"], "schema": L.SCHEMA_VERSION}, 12)


def _device_name(name: str) -> str:
    """A device name compared without case or punctuation (``RaspberryPi5`` = ``raspberrypi5``)."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _builtin(name: str) -> bool:
    """Whether ``name`` is a built-in local/gpu target (``cpu-torch-1t``, ``cuda-fp16`` ...)."""
    from .measure import spec_for_target

    try:
        spec_for_target(str(name))
    except ValueError:
        return False
    return True


def check_lut_matches(target, lut: dict, path) -> None:
    """A loaded LUT can be ``target``'s: the same scope, and

    - a local target's LUT is this project's measurement of that very target (its ``target``
      field is the target's name: ``cpu-torch-1t`` ...);
    - a gpu target's LUT is a measurement, not an external device's table, and when both are
      built-in target names (``cuda-fp16`` ...), the same one;
    - an external device's table (Seg-NAS schema) names the target's device (case and
      punctuation aside); a LUT measured with ``linas lut build`` on one's own board may serve
      a ``gpu`` or ``external`` target of any name (its ``target`` field is the runtime
      configuration it was built with, not a device).

    Raises:
        LUTError: naming the file, the target and what differs.
    """
    external = lut["runtime"] == "external"
    problems = []
    if lut["scope"] != target.scope:
        problems.append(f"it covers scope {lut['scope']!r}, the target {target.scope!r}")
    if external and target.kind in ("local", "gpu"):
        problems.append(f"it is an external device table, the target is kind {target.kind!r}")
    named = _device_name(lut["target"]) == _device_name(target.name) if external else lut["target"] == target.name
    both_builtin = _builtin(target.name) and _builtin(lut["target"])
    if (target.kind == "local" or external or (target.kind == "gpu" and both_builtin)) and not named:
        problems.append(f"it was measured for {lut['target']!r}")
    if problems:
        raise L.LUTError(f"{display_path(path)}: not the LUT of target {target.name!r}: {'; '.join(problems)}")


def load_target_lut(profile, target, here: bool = False, progress: bool = True) -> dict | None:
    """One target's LUT: loaded (resolution checked), measured here if it is a local target
    without a committed file, None for an optional target whose file is absent.

    Raises:
        ValueError: a LUT path that is missing (and not optional) or not a file, naming the
            target and the path.
        LUTError: the file is not a valid LUT, or not this target's (:func:`check_lut_matches`).
    """
    profile = _as_profile(profile)
    path = target_lut_path(profile, target, here)
    resolution = profile.data.resolution
    if path.is_file():
        try:
            lut = L.load_lut(path, resolution)
        except L.LUTError as err:  # the message names the file; say which target reads it
            raise L.LUTError(f"profile {profile.name!r}: target {target.name!r}: {err}") from err
        check_lut_matches(target, lut, path)
        return lut
    if path.is_dir():
        raise ValueError(f"profile {profile.name!r}: target {target.name!r}: LUT path {path} is a directory, "
                         "not a LUT file")
    if path.exists():
        raise ValueError(f"profile {profile.name!r}: target {target.name!r}: LUT path {path} is not a file")
    if measures_here(target, here):
        return L.build_lut(target.name, resolution, profile.latency.measure, path,
                           pairs_per_slot=profile.latency.pairs_per_slot, progress=progress,
                           choices=list(profile.latency.lut_choices) or None, quiet=profile.latency.quiet)
    if target.optional:
        log.warning("profile %s: target %s has no LUT at %s yet (optional: left out)", profile.name, target.name, path)
        return None
    hint = (f"; measure this machine into it with `linas lut measure --profile {profile.name}`"
            if target.kind == "local" else "")
    raise ValueError(f"profile {profile.name!r}: target {target.name!r}: LUT file {path} does not exist{hint}")
