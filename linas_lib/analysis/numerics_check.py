"""What portable numerics changes in a training, and what it costs on this machine.

``linas numerics check`` trains one decoder with the benchmark table's recipe (its epochs
shortened) on the profile's cached taps, each run in a fresh process, per arm and simulated CPU:

* arms: ``native``; ``portable`` (:mod:`linas_lib.numerics`); and two ablations, portable with
  one pin released (``release_aten``: ATen's own kernels dispatch by the CPU again;
  ``release_onednn``: oneDNN on again);
* simulated CPUs: this one, and older ones made by capping the libraries' instruction sets
  (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``): what ATen and
  oneDNN would pick on an AVX2-only CPU (a Zen 3) or an SSE4 one.

What it can show: native runs move with those choices (the mechanism); each released pin lets
them move again (each pin is needed). What it cannot: the full ``portable`` arm overrides
exactly the choices the simulation makes (ATen's build is pinned, oneDNN is off) and MKL's cap
did nothing on the AMD CPU it was tried on, so its identical runs show that the pins take
effect and that runs repeat, not that another CPU gives the same. That is tested only across
machines: each machine's check is kept (``bench/numerics/<cpu>.<mode>.*``, the mode being the
one the command ran in, which made the taps) and its portable digests are compared with every
other machine's committed check on the same taps, settings and torch version. Run it with
``LINAS_NUMERICS=portable`` so that the taps come from a portably trained encoder.

The cost: training seconds per arm on this CPU (mean, SD, min-max over the repeats).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import numerics
from ..keys import content_hash
from ..provenance import provenance, read_csv_table, write_csv, write_json
from ..space import parse_arch
from .bench import as_profile, bench_dir, cached_features, check_bench, torch_threads, train_item

DEFAULT_ARCH = "DWSep5x5_w50-DilatedDWSep_w50-DWSep3x3_w50-Conv7x7_w50-EdgeConv_w50"  # every op kind
SIMULATED_CPUS = {
    "this": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
ARMS = {
    "native": {numerics.ENV_VAR: "native"},
    "portable": {numerics.ENV_VAR: "portable"},
    "release_aten": {numerics.ENV_VAR: "portable", numerics.RELEASE_VAR: "aten"},
    "release_onednn": {numerics.ENV_VAR: "portable", numerics.RELEASE_VAR: "onednn"},
}
INPUT_ARMS = ("native", "portable")  # the taps' check: an encoder's pre-training per run is minutes
_CONTROLLED = {numerics.ENV_VAR, numerics.RELEASE_VAR, *numerics.PORTABLE_ENV,
               *(k for env in SIMULATED_CPUS.values() for k in env)}


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """What one check trains: the architecture, its seed, the epochs and the repeats per cell."""

    arch: str = DEFAULT_ARCH
    seed: int = 0
    epochs: int = 2
    repeats: int = 2


def child_env(arm: str, cpu: str) -> dict[str, str]:
    """This process's environment with the numerics and ISA variables of one run only."""
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    return env | SIMULATED_CPUS[cpu] | ARMS[arm]


def train_probe(inputs: Path, arch: str, seed: int, epochs: int, profile_ref) -> dict:
    """One training on the taps saved in ``inputs`` (in the calling process's numerics): the
    scores, the run's digest and its seconds."""
    import torch

    profile = as_profile(profile_ref)
    bench = dataclasses.replace(check_bench(profile), epochs=int(epochs))
    splits = torch.load(inputs, weights_only=False)
    with torch_threads(bench.threads_per_worker):
        result = train_item(parse_arch(arch), seed, bench, splits)
    numbers = [result[k] for k in ("val_miou", "test_miou", "val_crack_iou", "test_crack_iou")] + result["loss_history"]
    return {"digest": content_hash([repr(float(x)) for x in numbers])[:16], "val_miou": result["val_miou"],
            "test_miou": result["test_miou"], "train_seconds": result["train_seconds"],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkldnn": bool(torch.backends.mkldnn.enabled),
            "nnpack": numerics.nnpack_enabled(torch)}


def _run_child(args: list[str], arm: str, cpu: str, extra_env: dict | None = None) -> dict:
    """This module's ``args`` in a fresh Python process of ``arm`` on the simulated ``cpu``;
    the JSON line it prints last."""
    env = child_env(arm, cpu) | (extra_env or {})
    done = subprocess.run([sys.executable, "-m", __name__, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"numerics check: the {arm} run on the simulated {cpu} CPU failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _train_args(inputs: Path, settings: CheckSettings, profile_name: str) -> list[str]:
    return ["train", str(inputs), settings.arch, str(settings.seed), str(settings.epochs), profile_name]


def inputs_digest(splits: dict) -> str:
    """Content hash of the taps, masks and names the check trains and scores on."""
    from ..supernet.train import dataset_digest_of

    return content_hash({name: dataset_digest_of(split) for name, split in sorted(splits.items())})[:16]


def run_check(profile_ref, settings: CheckSettings = CheckSettings(), data_seed: int = 0,
              arms=tuple(ARMS), cpus=tuple(SIMULATED_CPUS)) -> tuple[list[dict], str]:
    """Every (arm, simulated CPU, repeat) run, in an order that interleaves the arms so a slow
    spell of the machine does not fall on one arm only; and the inputs' digest."""
    import torch

    profile = as_profile(profile_ref)
    splits, _ = cached_features(profile, data_seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="linas-numerics-") as tmp:
        inputs = Path(tmp) / "splits.pt"
        torch.save(splits, inputs)
        for repeat in range(settings.repeats):
            for cpu in cpus:
                for arm in arms:
                    run = _run_child(_train_args(inputs, settings, _name(profile_ref, profile)), arm, cpu)
                    rows.append({"arm": arm, "simulated_cpu": cpu, "repeat": repeat, **run})
    return rows, inputs_digest(splits)


def _name(profile_ref, profile) -> str:
    """What a child process loads: the profile's name or YAML path as given."""
    return str(profile_ref) if isinstance(profile_ref, (str, Path)) else profile.name


def build_taps(profile_ref, data_seed: int = 0) -> dict:
    """The profile's taps built from nothing in this process (the encoder's pre-training
    included, into the cache this process is given): their digest and the seconds it took."""
    import torch

    profile = as_profile(profile_ref)
    torch.set_num_threads(profile.threads)  # as a notebook runs: a reduction's order follows the threads
    start = time.perf_counter()
    splits, _ = cached_features(profile, data_seed)
    return {"inputs_digest": inputs_digest(splits), "seconds": time.perf_counter() - start}


def check_inputs(profile_ref, data_seed: int = 0, arms=INPUT_ARMS, cpus=tuple(SIMULATED_CPUS)) -> list[dict]:
    """The taps built afresh (encoder pre-training, then features; each in an empty cache) per
    arm and simulated CPU: does the encoder's training move with the CPU too?"""
    profile = as_profile(profile_ref)
    rows = []
    with tempfile.TemporaryDirectory(prefix="linas-numerics-taps-") as tmp:
        for cpu in cpus:
            for arm in arms:
                cache = {"LINAS_CACHE_DIR": str(Path(tmp) / f"{arm}-{cpu}")}
                run = _run_child(["taps", _name(profile_ref, profile), str(data_seed)], arm, cpu, cache)
                rows.append({"arm": arm, "simulated_cpu": cpu, **run})
    return rows


def summarise_inputs(rows: list[dict]) -> dict:
    """Per arm: how many distinct taps the simulated CPUs gave, and the seconds on this CPU."""
    out = {}
    for arm in sorted({r["arm"] for r in rows}):
        mine = [r for r in rows if r["arm"] == arm]
        out[f"inputs.{arm}.distinct_digests"] = len({r["inputs_digest"] for r in mine})
        out[f"inputs.{arm}.seconds_this_cpu"] = next((r["seconds"] for r in mine if r["simulated_cpu"] == "this"), None)
    return out


def summarise(rows: list[dict]) -> dict:
    """The check's figures: distinct digests per arm, training seconds per arm on this CPU, and
    the readings: the control moved (native), the portable arm repeated, each pin was needed."""
    out: dict = {}
    for arm in sorted({r["arm"] for r in rows}):
        mine = [r for r in rows if r["arm"] == arm]
        out[f"{arm}.n_runs"] = len(mine)
        out[f"{arm}.distinct_digests"] = len({r["digest"] for r in mine})
        here = [r["train_seconds"] for r in mine if r["simulated_cpu"] == "this"]
        if here:
            out.update({f"{arm}.train_s_mean": statistics.fmean(here), f"{arm}.train_s_n": len(here),
                        f"{arm}.train_s_sd": statistics.stdev(here) if len(here) > 1 else float("nan"),
                        f"{arm}.train_s_min": min(here), f"{arm}.train_s_max": max(here)})
    if "native.distinct_digests" in out and "portable.distinct_digests" in out:
        out["control_moved"] = out["native.distinct_digests"] > 1
        out["portable_identical"] = out["portable.distinct_digests"] == 1
        out["portable_slowdown"] = out.get("portable.train_s_mean", float("nan")) / out.get("native.train_s_mean", float("nan"))
    for pin in ("aten", "onednn"):
        if f"release_{pin}.distinct_digests" in out:
            out[f"pin_needed.{pin}"] = out[f"release_{pin}.distinct_digests"] > 1
    return out


def machine_slug(cpu_id: str) -> str:
    """A file name for a CPU id (``AuthenticAMD family 25 model 17 stepping 1`` ->
    ``authenticamd-family-25-model-17-stepping-1``)."""
    return re.sub(r"[^a-z0-9]+", "-", cpu_id.lower()).strip("-") or "unknown"


def check_folder(profile) -> Path:
    """``results/<profile>/bench/numerics/``: one CSV and one JSON per machine and inputs' numerics
    (``<cpu>.<mode>.csv``: the taps from the native or the portable encoder)."""
    return bench_dir(as_profile(profile)) / "numerics"


def _other_cpus(folder: Path, pattern: str, here: str, torch_version: str):
    """``(path, cpu id, saved JSON)`` of the committed files matching ``pattern`` that another CPU
    wrote with the same torch version (only those can be compared with this machine's)."""
    for path in sorted(folder.glob(pattern)):
        saved = json.loads(path.read_text())
        prov = saved.get("provenance", {})
        cpu = prov.get("machine", {}).get("cpu_id", path.stem)
        if cpu != here and prov.get("packages", {}).get("torch") == torch_version:
            yield path, cpu, saved


def other_machines(folder: Path, here: str, inputs: str, settings: CheckSettings, torch_version: str) -> dict:
    """Portable digests of the other machines' committed checks on the same inputs, settings and
    torch version, by CPU id, and those whose inputs differ (not comparable)."""
    same, other_inputs = {}, []
    for path, cpu, saved in _other_cpus(folder, "*.json", here, torch_version):
        if path.name.endswith(".supernet.json") or saved.get("settings") != dataclasses.asdict(settings):
            continue
        if saved.get("inputs_digest") != inputs:
            other_inputs.append(cpu)
            continue
        table = read_csv_table(path.with_suffix(".csv"), columns=("arm", "digest"))
        same[cpu] = sorted({r["digest"] for r in table if r["arm"] == "portable"})
    return {"same_inputs": same, "other_inputs": other_inputs}


def write_check(profile_ref, rows: list[dict], inputs: str, settings: CheckSettings,
                input_rows: list[dict] | None = None) -> dict:
    """This machine's rows and summary under :func:`check_folder`, with the comparison to the
    other machines' committed checks; returns the summary. ``input_rows``
    (:func:`check_inputs`) go to ``<cpu>.<mode>.inputs.csv`` and their figures to the summary."""
    profile = as_profile(profile_ref)
    folder = check_folder(profile)
    prov = provenance(profile.name, profile.to_dict())
    here = prov["machine"]["cpu_id"]
    summary = {"settings": dataclasses.asdict(settings), "inputs_digest": inputs,
               "inputs_numerics": numerics.mode(), "figures": summarise(rows) | summarise_inputs(input_rows or [])}
    others = other_machines(folder, here, inputs, settings, prov["packages"].get("torch", ""))
    mine = sorted({r["digest"] for r in rows if r["arm"] == "portable"})
    summary["other_machines"] = others
    summary["portable_matches"] = {cpu: digests == mine for cpu, digests in others["same_inputs"].items()}
    stem = f"{machine_slug(here)}.{numerics.mode()}"
    write_csv(folder / f"{stem}.csv", rows, prov)
    if input_rows:
        write_csv(folder / f"{stem}.inputs.csv", input_rows, prov)
    write_json(folder / f"{stem}.json", summary, prov)
    return summary


def supernet_identity(profile_ref, seed: int = 0) -> dict:
    """The profile's supernet in this process's numerics (trained now unless cached, under the
    mode's cache): its key, weights digest, extracted architecture, the call's seconds, and how
    well its WS mIoU ranks the benchmark table (05's oracle check, :func:`ranking.oracle_rows`)."""
    from ..space import arch_string
    from ..supernet.train import trained_supernet
    from .ranking import load_table, oracle_rows, oracle_summary

    profile = as_profile(profile_ref)
    start = time.perf_counter()
    supernet = trained_supernet(profile, seed)
    seconds = time.perf_counter() - start
    oracle = oracle_summary(oracle_rows(supernet, load_table(profile, seed), seed=seed))
    return {"supernet_key": supernet.key, "weights_digest": supernet.weights_digest,
            "argmax": arch_string(supernet.argmax()), "seconds": seconds,
            "oracle_tau_ws": oracle.get("oracle_rank.tau.ws")}


def write_supernet_identity(profile_ref, identity: dict) -> dict:
    """``<cpu>.<mode>.supernet.json`` under :func:`check_folder`, with ``weights_match``: per
    other machine's committed file of the same mode, supernet key and torch version, whether its
    weights are these to every byte; returns what was written."""
    profile = as_profile(profile_ref)
    folder = check_folder(profile)
    mode = numerics.mode()
    prov = provenance(profile.name, profile.to_dict())
    here = prov["machine"]["cpu_id"]
    matches = {cpu: saved.get("weights_digest") == identity["weights_digest"]
               for _, cpu, saved in _other_cpus(folder, f"*.{mode}.supernet.json", here, prov["packages"].get("torch", ""))
               if saved.get("supernet_key") == identity["supernet_key"]}
    record = {**identity, "numerics": mode, "weights_match": matches}
    write_json(folder / f"{machine_slug(here)}.{mode}.supernet.json", record, prov)
    return record


def _main(argv: list[str]) -> None:
    """A child process of the check: ``train INPUTS ARCH SEED EPOCHS PROFILE`` or ``taps PROFILE SEED``."""
    parser = argparse.ArgumentParser(description="one run of the numerics check (a child process)")
    sub = parser.add_subparsers(dest="what", required=True)
    train = sub.add_parser("train")
    for name in ("inputs", "arch", "seed", "epochs", "profile"):
        train.add_argument(name)
    taps = sub.add_parser("taps")
    taps.add_argument("profile")
    taps.add_argument("seed")
    args = parser.parse_args(argv)
    if args.what == "train":
        result = train_probe(Path(args.inputs), args.arch, int(args.seed), int(args.epochs), args.profile)
    else:
        result = build_taps(args.profile, int(args.seed))
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
