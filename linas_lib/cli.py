"""The ``linas`` command line: headless entry points (notebooks, LUTs) for any machine.

Imports are lazy so ``linas lut ...`` works where only torch is installed (GPU boxes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .latency.quiet import NoisyMachineError  # stdlib only: safe to import eagerly


def _cmd_notebook(args: argparse.Namespace) -> int:
    from .runner import NotebookFailed, run_notebook

    try:
        executed = run_notebook(args.name, args.profile, args.seed, html=not args.no_html)
    except NotebookFailed as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 1
    print(f"executed {executed}")
    return 0


def _cmd_paper(args: argparse.Namespace) -> int:
    from .paper import run_paper
    from .runner import NotebookFailed

    try:
        run_paper(args.profile, args.seed, force=args.force, only=args.only)
    except NotebookFailed as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import run_compare

    return run_compare(args.profile, show_all=args.all, ref=args.ref)


def _cmd_replicate(args: argparse.Namespace) -> int:
    from .replicate import ReplicateError, replicate

    try:
        dest = replicate(args.profile, args.only, workdir=args.workdir, label=args.label, commit=args.commit,
                         partial=args.partial)
    except ReplicateError as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 1
    print(f"collected into {dest}")
    return 0


def _cmd_goals(args: argparse.Namespace) -> int:
    from .goals import with_goals
    from .keys import atomic_write_text
    from .paper import write_goals
    from .paths import project_root

    try:
        path = write_goals(args.profile)
    except ValueError as err:  # a summary.json that is not JSON: the message names it
        print(f"linas: error: {err}", file=sys.stderr)
        return 1
    if path is None:
        print(f"linas: error: results/{args.profile}/ holds no summary.json yet: run its notebooks first", file=sys.stderr)
        return 1
    table = path.read_text()
    if not args.readme:
        print(table, end="")
        return 0
    readme = project_root() / "README.md"
    try:
        text = with_goals(readme.read_text(), args.profile, table)
    except ValueError as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 1
    atomic_write_text(readme, text)
    print(f"wrote {path} and its block in {readme.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``linas``."""
    parser = argparse.ArgumentParser(prog="linas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    nb = sub.add_parser("notebook", help="execute a notebook with papermill (and render HTML)")
    nb.add_argument("name", help="notebook name, e.g. 00_data")
    nb.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    nb.add_argument("--seed", type=_non_negative_int, default=0)
    nb.add_argument("--no-html", action="store_true", help="skip the nbconvert HTML rendering")
    nb.set_defaults(func=_cmd_notebook)
    _add_paper_commands(sub)

    # `linas lut build|check` is added by linas_lib.latency (see _add_lut_commands).
    _add_lut_commands(sub)
    _add_machine_commands(sub)
    _add_data_commands(sub)
    _add_bench_commands(sub)
    _add_records_commands(sub)
    _add_numerics_commands(sub)
    return parser


def _add_data_commands(sub) -> None:
    """``linas data fetch crackforest DEST [--archive PATH] [--force]``."""
    data = sub.add_parser("data", help="fetch and verify real datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser(
        "fetch", help="download (or take a local archive of) a dataset, verify every file, install it in DEST"
    )
    fetch.add_argument("dataset", choices=["crackforest"], help="the dataset (crackforest)")
    fetch.add_argument("dest", help="folder to create (then set data.crackforest_dir to it)")
    fetch.add_argument("--archive", default=None, metavar="PATH_OR_FOLDER",
                       help="a local .zip/.tar.gz of the upstream repository, or an extracted folder "
                            "(offline machines); default: download the pinned commit")
    fetch.add_argument("--force", action="store_true", help="replace DEST even if it already is a verified copy")
    fetch.add_argument("--timeout", type=_positive_float, default=None, help="download socket timeout in seconds (default 60)")
    fetch.set_defaults(func=_cmd_data_fetch)


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from .fetch import DOWNLOAD_TIMEOUT_S, FetchError, fetch_crackforest, fetch_report

    timeout = DOWNLOAD_TIMEOUT_S if args.timeout is None else args.timeout
    try:
        result = fetch_crackforest(args.dest, args.archive, force=args.force, timeout=timeout,
                                   say=lambda line: print(line, file=sys.stderr))
    except OSError as err:  # e.g. DEST's parent not writable
        raise FetchError(f"cannot fetch crackforest into {args.dest}: {err}") from err
    print(fetch_report(result))
    return 0


def _add_paper_commands(sub) -> None:
    """``linas paper`` (run the stale notebooks, by content stamps) and ``linas compare``."""
    paper = sub.add_parser("paper", help="run, in order, every notebook whose inputs changed (content stamps "
                           "in .cache/stamps/<profile>/)")
    paper.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    paper.add_argument("--seed", type=_non_negative_int, default=0)
    paper.add_argument("--force", action="store_true", help="rerun every notebook, stamps or not")
    paper.add_argument("--only", default=None, metavar="NAME", help="consider only this notebook, e.g. 03_supernet")
    paper.set_defaults(func=_cmd_paper)
    compare = sub.add_parser("compare", help="compare the reproduced summary figures with the committed ones "
                             "(exit 1 when a non-timing figure differs)")
    compare.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    compare.add_argument("--all", action="store_true", help="print every row, not only the non-ok ones")
    compare.add_argument("--ref", default="HEAD", help="git revision holding the committed results (default: HEAD)")
    compare.set_defaults(func=_cmd_compare)
    rep = sub.add_parser("replicate", help="rerun a notebook of the committed code in a clean clone with a cold cache "
                         "(.cache/replicas/), compare it there, and copy its files and compare.csv to "
                         "results/<profile>/replicas/<label>/ (never over the committed results)")
    rep.add_argument("--profile", default="cpu", help="profile name (default: cpu)")
    rep.add_argument("--only", required=True, metavar="NAME", help="the notebook to replicate, e.g. 05_pareto")
    rep.add_argument("--commit", default="HEAD", help="the commit to replicate (default: HEAD)")
    rep.add_argument("--workdir", default=None, help="the clone's folder (default .cache/replicas/<profile>-<notebook>-<sha12>; "
                     "resumed when it exists at the same commit)")
    rep.add_argument("--label", default=None, help="folder name under replicas/ (default: <sha7>-<recorded cpu>)")
    rep.add_argument("--partial", action="store_true", help="run nothing: collect what a started replica has "
                     "written so far (replica.json says finished: false)")
    rep.set_defaults(func=_cmd_replicate)
    goals = sub.add_parser("goals", help="the issues' goals read off the committed summaries "
                           "(results/<profile>/goals.md; --readme: also README.md's goals block)")
    goals.add_argument("--profile", default="cpu", help="profile name (default: cpu)")
    goals.add_argument("--readme", action="store_true", help="rewrite the profile's goals block in README.md")
    goals.set_defaults(func=_cmd_goals)


def _at_least(convert, low, what: str):
    """An argparse type: ``convert(text)``, finite and >= ``low``, else an error saying ``what`` was expected."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_non_negative_int = _at_least(int, 0, "a whole number >= 0")
_positive_int = _at_least(int, 1, "a whole number >= 1")
_non_negative_float = _at_least(float, 0, "a finite number >= 0")
_positive_float = _at_least(float, math.ulp(0.0), "a finite number > 0")


def _int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated whole numbers >= 0 (``--choices``, ``--threads 1,2``)."""
    try:
        return tuple(_non_negative_int(part) for part in text.split(",")) if text else ()
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0, got {text!r}") from None


def _add_lut_commands(sub) -> None:
    """``linas lut build`` (measure a LUT on this machine) and ``linas lut check FILE``."""
    lut = sub.add_parser("lut", help="measure or check latency lookup tables")
    lut_sub = lut.add_subparsers(dest="lut_command", required=True)
    build = lut_sub.add_parser("build", help="measure a LUT for a target on this machine (headless)")
    build.add_argument("--target", required=True, help="cpu-torch-<N>t, cpu-ort-<N>t, cuda-fp32|fp16[-graph]")
    build.add_argument("--resolution", type=int, default=128, help="input side (default 128)")
    build.add_argument("--out", required=True, help="JSON file to write (resumes from <out>.partial.json)")
    build.add_argument("--warmup", type=_non_negative_int, default=10)
    build.add_argument("--repeats", type=_positive_int, default=30)
    build.add_argument("--max-cv", type=_positive_float, default=0.1)
    build.add_argument("--max-retries", type=_non_negative_int, default=2)
    build.add_argument("--max-time-ms", type=_non_negative_float, default=0.0, help="cap repeats of big entries (0 = off)")
    build.add_argument("--evict-mib", type=_non_negative_int, default=0,
                       help="read this many MiB before each timed call, so entries meet the caches as in the pipeline (0 = off)")
    build.add_argument("--min-repeats", type=_positive_int, default=3, help="floor of the capped repeats")
    build.add_argument("--pairs-per-slot", type=_non_negative_int, default=6, help="I4 pairs timed per slot (441 = all)")
    build.add_argument("--choices", type=_int_list, default=(), help="comma-separated choice indices 0..20 (tests only)")
    build.add_argument("--quiet-policy", choices=("warn", "refuse", "off"), default="warn",
                       help="when other work keeps the machine busy: warn (default), refuse, or only record")
    build.set_defaults(func=_cmd_lut_build)
    measure = lut_sub.add_parser("measure", help="re-measure every local target of a profile on this machine, "
                                 "into the LUT file the profile names (the committed data)")
    measure.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    measure.add_argument("--target", action="append", default=None, help="only this target (repeatable)")
    measure.set_defaults(func=_cmd_lut_measure)
    check = lut_sub.add_parser("check", help="validate a LUT file (ours or an external one)")
    check.add_argument("file")
    check.add_argument("--resolution", type=int, default=None, help="require this resolution")
    check.set_defaults(func=_cmd_lut_check)


def _add_machine_commands(sub) -> None:
    """``linas machine check``: is this machine quiet enough to time latency?"""
    machine = sub.add_parser("machine", help="this machine's load, as the latency measurements judge it")
    machine_sub = machine.add_subparsers(dest="machine_command", required=True)
    check = machine_sub.add_parser("check", help="load, steal and busy processes now; exit 3 when not quiet")
    check.add_argument("--threads", type=_positive_int, default=1, help="timing threads the measurement would use")
    check.add_argument("--seconds", type=_positive_float, default=1.0, help="length of the sample (default 1)")
    check.add_argument("--max-other-cores", type=_non_negative_float, default=0.25, help="cores other work may keep busy")
    check.set_defaults(func=_cmd_machine_check)


def _cmd_machine_check(args: argparse.Namespace) -> int:
    from .latency.quiet import QuietSettings, problems, snapshot

    settings = QuietSettings(policy="warn", max_other_cores=args.max_other_cores, sample_s=args.seconds)
    reading = snapshot(settings.sample_s)
    found = problems(reading, args.threads, settings)
    print(json.dumps(reading, indent=1))
    print(f"quiet enough for {args.threads} thread(s)" if not found else "not quiet: " + "; ".join(found))
    return 3 if found else 0


def _cmd_lut_build(args: argparse.Namespace) -> int:
    from .latency.lut import build_lut, lut_summary
    from .latency.quiet import QuietSettings
    from .latency.settings import MeasureSettings

    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats, max_cv=args.max_cv,
                               max_retries=args.max_retries, max_time_ms=args.max_time_ms,
                               min_repeats=args.min_repeats, evict_mib=args.evict_mib)
    choices = list(args.choices) or None
    lut = build_lut(args.target, args.resolution, settings, args.out, pairs_per_slot=args.pairs_per_slot,
                    choices=choices, quiet=QuietSettings(policy=args.quiet_policy))
    print(f"wrote {args.out}: {lut_summary(lut)}")
    return 0


def _cmd_lut_measure(args: argparse.Namespace) -> int:
    from .config import load_profile, profile_path
    from .latency.lut import build_lut, lut_summary
    from .latency.targets import target_lut_path

    profile = load_profile(args.profile)
    lat = profile.latency
    names = [t.name for t in lat.targets if t.kind == "local"]
    unknown = [n for n in args.target or () if n not in names]
    if unknown:
        raise ValueError(f"--target {unknown[0]!r} is not a local target of {profile_path(args.profile)} "
                         f"(its local targets: {', '.join(names) or 'none'})")
    local = [t for t in lat.targets if t.kind == "local" and (args.target is None or t.name in args.target)]
    if not local:
        raise ValueError(f"profile {profile.name!r}: no local target to measure"
                         + (f" among {', '.join(args.target)}" if args.target else ""))
    for target in local:
        out = target_lut_path(profile, target)
        lut = build_lut(target.name, profile.data.resolution, lat.measure, out, pairs_per_slot=lat.pairs_per_slot,
                        choices=list(lat.lut_choices) or None, quiet=lat.quiet)
        print(f"wrote {out}: {lut_summary(lut)}")
    return 0


def _cmd_lut_check(args: argparse.Namespace) -> int:
    from .latency.lut import load_lut, lut_summary

    lut = load_lut(args.file, args.resolution)
    print(f"{args.file}: ok {lut_summary(lut)}")
    return 0


def _add_numerics_commands(sub) -> None:
    """``linas numerics check``: what portable numerics (``LINAS_NUMERICS=portable``) buys and costs here."""
    num = sub.add_parser("numerics", help="native or portable CPU kernels (LINAS_NUMERICS): check them on this machine")
    num_sub = num.add_subparsers(dest="numerics_command", required=True)
    check = num_sub.add_parser("check", help="train one decoder in fresh processes per arm (native, portable, "
                               "portable with one pin released), on this CPU and on older ones simulated by capping "
                               "the libraries' instruction sets; "
                               "results/<profile>/bench/numerics/<cpu>.csv|json (timed: run it alone)")
    _profile_and_seed(check, "data-split seed of the taps (default 0)")
    check.add_argument("--arch", default="", help="architecture to train (default: one with every op kind, "
                       "numerics_check.DEFAULT_ARCH)")
    check.add_argument("--train-seed", type=_non_negative_int, default=0, help="the training's seed (default 0)")
    check.add_argument("--epochs", type=_positive_int, default=2, help="epochs of the table's recipe (default 2)")
    check.add_argument("--repeats", type=_positive_int, default=2, help="runs per arm and simulated CPU (default 2)")
    check.add_argument("--inputs", action="store_true", help="also build the taps from nothing (the encoder's "
                       "pre-training included) per mode and simulated CPU, each in an empty cache (minutes)")
    check.set_defaults(func=_cmd_numerics_check)
    sup = num_sub.add_parser("supernet", help="the profile's supernet in this process's numerics (trained unless "
                             "cached; tens of minutes): key, weights digest, WS tau against the table, and whether "
                             "other machines' committed weights of the same mode match; "
                             "results/<profile>/bench/numerics/<cpu>.<mode>.supernet.json")
    _profile_and_seed(sup, "run seed of the supernet (default 0: 05's)")
    sup.set_defaults(func=_cmd_numerics_supernet)


def _cmd_numerics_supernet(args: argparse.Namespace) -> int:
    from .analysis.numerics_check import supernet_identity, write_supernet_identity

    record = write_supernet_identity(args.profile, supernet_identity(args.profile, args.seed))
    print(json.dumps(record, indent=1))
    return 0 if all(record["weights_match"].values()) else 1


def _cmd_numerics_check(args: argparse.Namespace) -> int:
    from .analysis.numerics_check import DEFAULT_ARCH, CheckSettings, check_inputs, run_check, write_check
    from .space import arch_string, parse_arch

    settings = CheckSettings(arch=arch_string(parse_arch(args.arch or DEFAULT_ARCH)), seed=args.train_seed, epochs=args.epochs,
                             repeats=args.repeats)
    rows, inputs = run_check(args.profile, settings, data_seed=args.seed)
    input_rows = check_inputs(args.profile, data_seed=args.seed) if args.inputs else None
    summary = write_check(args.profile, rows, inputs, settings, input_rows)
    print(json.dumps(summary, indent=1))
    if not summary["portable_matches"]:
        print("no other machine's committed check on the same taps, settings and torch version: nothing compared "
              "across machines (run it with LINAS_NUMERICS=portable on another CPU model)")
    figures = summary["figures"]
    held = figures.get("portable_identical", True) and figures.get("inputs.portable.distinct_digests", 1) == 1
    return 0 if held and all(summary["portable_matches"].values()) else 1


def _add_records_commands(sub) -> None:
    """``linas records export``: 05's search as committed data (linas_lib.search.records)."""
    rec = sub.add_parser("records", help="05's search as committed data: its WS oracle and every cached run")
    rec_sub = rec.add_subparsers(dest="records_command", required=True)
    exp = rec_sub.add_parser("export", help="write the record of this machine's 05 search cache (oracle.csv, "
                             "runs.csv, records.json) into OUT; loads the cached supernet (trains it if absent)")
    exp.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    exp.add_argument("--seed", type=_non_negative_int, default=0, help="the notebook seed 05 ran with (default 0)")
    exp.add_argument("--out", required=True, help="the record's folder")
    exp.set_defaults(func=_cmd_records_export)
    more = rec_sub.add_parser("run", help="run more searches on this machine's trained supernet of the profile "
                              "(05's setup and run cache), for a record to export afterwards; several processes "
                              "may share the cache on disjoint methods or seeds")
    more.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    more.add_argument("--seed", type=_non_negative_int, default=0, help="the notebook seed 05 ran with (default 0)")
    more.add_argument("--methods", default="", help="comma-separated method names (required without --oracle)")
    more.add_argument("--seeds", default="", help="search seeds, e.g. 50-89 or 50,51 (required without --oracle)")
    more.add_argument("--oracle", action="store_true",
                      help="make 05's long EPR run of the oracle instead (search.oracle_evals, search.oracle_seed): "
                      "with 05's compared methods on search.seeds, a record's reference runs")
    more.add_argument("--evals", type=_non_negative_int, default=0,
                      help="evaluations per run (default: the protocol's budget); more makes long runs (folder long_<evals>)")
    more.set_defaults(func=_cmd_records_run)


def _cmd_records_run(args: argparse.Namespace) -> int:
    from .search.report import run_more

    if args.oracle:
        runs = run_more(args.profile, [], [], args.seed, oracle=True)
        print(f"{len(runs)} runs cached")
        return 0
    if not args.methods or not args.seeds:
        raise ValueError("linas records run: --methods and --seeds are required (or --oracle)")
    runs = run_more(args.profile, args.methods.split(","), _seed_list(args.seeds), args.seed, args.evals)
    print(f"{len(runs)} runs cached")
    return 0


def _seed_list(text: str) -> list[int]:
    """``"50-89"`` or ``"50,51"`` as distinct integers >= 0 (at least one)."""
    try:
        if "-" in text:
            low, high = text.split("-")
            seeds = list(range(int(low), int(high) + 1))
        else:
            seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected e.g. 50-89 or 50,51") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: expected at least one seed, each >= 0 and named once (e.g. 50-89 or 50,51)")
    return seeds


def _cmd_records_export(args: argparse.Namespace) -> int:
    from .search.report import export_search_records

    out = export_search_records(args.profile, args.seed, args.out)
    print(f"wrote {out}")
    return 0


def _add_bench_commands(sub) -> None:
    """``linas bench build|final|near-smallest|status|recheck|speed``: the standalone benchmark table
    (linas_lib.analysis.bench), and 05's final networks and near-smallest pairs trained with its recipe
    (linas_lib.analysis.final, linas_lib.analysis.near_smallest)."""
    bench = sub.add_parser("bench", help="the standalone benchmark table (ground truth for ranking studies)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    build = bench_sub.add_parser("build", help="train the pending (architecture, seed) items on Dask and assemble "
                                 "results/<profile>/bench/table.csv (resumes per item)")
    _bench_common(build)
    _dask_args(build)
    build.set_defaults(func=_cmd_bench_build)
    fin = bench_sub.add_parser("final", help="train each target's chosen architecture (results/<profile>/05_pareto/"
                               "chosen.csv) for search.final_seeds with the table's recipe, on Dask (resumes per item)")
    _profile_and_seed(fin)
    fin.add_argument("--rule", default="", help="train instead each target's candidate that this choice rule picks "
                     "from 05's choice_candidates.csv, e.g. retest_mean; 'registered': every rule notebook 09 reads")
    _dask_args(fin)
    fin.set_defaults(func=_cmd_bench_final)
    retune = bench_sub.add_parser("retune", help="fine-tune every candidate of 05's choice_candidates.csv again "
                                  "(05's recipe, one generator per replicate; needs 05's supernet, cached or trained) "
                                  "into results/<profile>/bench/choice_replicates.csv; replicates 0 and 1 are checked "
                                  "against 05's committed fine-tunes")
    _profile_and_seed(retune, "the seed 05 ran with (default 0)")
    retune.add_argument("--replicates", type=_int_list, default=(0, 2, 3, 4, 5), metavar="K[,K...]", help="comma-separated replicates (default 0,2,3,4,5: an "
                        "identity check and study choice_truth's four fresh fine-tunes)")
    retune.set_defaults(func=_cmd_bench_retune)
    cands = bench_sub.add_parser("candidates", help="train every candidate of 05's choice_candidates.csv with the "
                                 "table's recipe (studies choice_truth, choice_standalone and choice_standalone2), on Dask (resumes "
                                 "per item)")
    _profile_and_seed(cands)
    cands.add_argument("--seeds", type=_int_list, default=None, metavar="S[,S...]",
                       help="training seeds (default 0,1,2,3: choice_truth's 0,1, choice_standalone's 2 and "
                       "choice_standalone2's 3)")
    _dask_args(cands)
    cands.set_defaults(func=_cmd_bench_candidates)
    near = bench_sub.add_parser("near-smallest", help="train 05's pairs near / far from the smallest path "
                                "(results/<profile>/05_pareto/near_smallest_pairs.csv) for bench.seeds with the "
                                "table's recipe, on Dask (resumes per item)")
    _profile_and_seed(near)
    _dask_args(near)
    near.set_defaults(func=_cmd_bench_near_smallest)
    stat = bench_sub.add_parser("status", help="count finished and pending items (trains nothing)")
    _bench_common(stat)
    stat.set_defaults(func=_cmd_bench_status)
    recheck = bench_sub.add_parser("recheck", help="train the N quickest finished table items again on this machine "
                                   "(in a temporary folder) and compare: results/<profile>/bench/recheck.csv")
    _profile_and_seed(recheck, "selection and data-split seed (default 0)")
    recheck.add_argument("--n", type=_positive_int, default=2, help="items to train again (default 2)")
    recheck.add_argument("--arch", default="", help="train this architecture's finished items again instead (its n "
                         "lowest seeds of the table's and 05's final seeds), into bench/recheck_arch.csv")
    recheck.set_defaults(func=_cmd_bench_recheck)
    speed = bench_sub.add_parser("speed", help="time decoder training steps (threads x batch size x variant), "
                                 "into results/<profile>/bench/train_step.csv; run it on a quiet machine")
    speed.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    speed.add_argument("--seed", type=_non_negative_int, default=0)
    speed.add_argument("--batch-sizes", type=_int_list, default=(2, 4, 8), help="comma-separated (default 2,4,8)")
    speed.add_argument("--threads", type=_int_list, default=(1, 2), help="comma-separated torch thread counts (default 1,2)")
    speed.add_argument("--variants", default="baseline,foreach,fused,f32_taps",
                       help="comma-separated, from baseline,foreach,fused,f32_taps,compile")
    speed.add_argument("--min-run-time", type=_non_negative_float, default=2.0, help="seconds timed per row (default 2)")
    speed.set_defaults(func=_cmd_bench_speed)


def _profile_and_seed(parser, seed_help: str = "data-split seed (default 0)") -> None:
    parser.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help=seed_help)


def _dask_args(parser) -> None:
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (default: a LocalCluster on this machine)")
    parser.add_argument("--workers", type=_positive_int, default=None, help="LocalCluster worker processes (default bench.workers)")
    parser.add_argument("--limit", type=_non_negative_int, default=None, metavar="K", help="run at most K pending items")


def _bench_common(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="profile name or YAML path (default: cpu)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="selection and data-split seed (default 0)")
    parser.add_argument("--pilot", action="store_true", help="the pilot: bench.pilot_archs x bench.pilot_seeds")
    parser.add_argument("--add-seeds", type=_int_list, default=None, metavar="S[,S...]",
                        help="training seeds to add to the table's architectures: their items only, and "
                             "bench/extension.json (the seed agreement with them); the table keeps bench.seeds "
                             "until the profile lists the new ones")


def _cmd_bench_build(args: argparse.Namespace) -> int:
    from .analysis.bench import build, extend

    _no_pilot_extension(args)
    if args.add_seeds is not None:
        summary = extend(args.profile, args.add_seeds, args.seed, scheduler=args.scheduler, workers=args.workers,
                         limit=args.limit)
    else:
        summary = build(args.profile, args.seed, pilot=args.pilot, scheduler=args.scheduler, workers=args.workers,
                        limit=args.limit)
    print(f"bench: {summary['done']}/{summary['items']} items done ({summary['ran']} run now), "
          f"{summary['pending']} pending")
    for name, path in summary["files"].items():
        print(f"  {name}: {path}")
    for name, value in summary["agreement"].items():
        print(f"  {name} = {value:.4g}")
    return 0


def _no_pilot_extension(args: argparse.Namespace) -> None:
    if args.pilot and args.add_seeds is not None:
        raise SystemExit("linas bench: --add-seeds extends the table, not the pilot; drop one of --pilot, --add-seeds")


def _cmd_bench_final(args: argparse.Namespace) -> int:
    from .analysis.bench import as_profile
    from .analysis.final import build_final, read_chosen, read_choice_candidates, rule_choice
    from .analysis.final_choice import RULES

    profile = as_profile(args.profile)
    if args.rule:
        candidates = read_choice_candidates(profile)
        chosen = [row for rule in (RULES if args.rule == "registered" else (args.rule,))
                  for row in rule_choice(candidates, rule)]
    else:
        chosen = read_chosen(profile)
    info = build_final(args.profile, chosen, args.seed, scheduler=args.scheduler, workers=args.workers, limit=args.limit)
    print(f"final networks: {info['done']}/{info['items']} items done ({info['ran']} run now), {info['pending']} pending")
    return 0


def _cmd_bench_retune(args: argparse.Namespace) -> int:
    from .analysis.final_choice import retune

    rows = retune(args.profile, args.replicates, args.seed)
    checked = [r for r in rows if r["identical"] != ""]
    print(f"fine-tunes: {len(rows)} ({len(rows) - len(checked)} fresh); 05's replicates made again: "
          f"{sum(r['identical'] is True for r in checked)}/{len(checked)} identical")
    return 0


def _cmd_bench_candidates(args: argparse.Namespace) -> int:
    from .analysis import choice_standalone2, choice_truth

    seeds = tuple(args.seeds) if args.seeds is not None else choice_standalone2.SEEDS
    info = choice_truth.build_candidates(args.profile, seeds, args.seed, scheduler=args.scheduler,
                                         workers=args.workers, limit=args.limit)
    print(f"choice candidates: {info['done']}/{info['items']} items done ({info['ran']} run now), "
          f"{info['pending']} pending")
    return 0


def _cmd_bench_near_smallest(args: argparse.Namespace) -> int:
    from .analysis import near_smallest
    from .analysis.bench import as_profile

    pairs = near_smallest.read_pairs(as_profile(args.profile))
    info = near_smallest.build(args.profile, pairs, args.seed, scheduler=args.scheduler, workers=args.workers,
                               limit=args.limit)
    print(f"near-smallest pairs: {info['done']}/{info['items']} items done ({info['ran']} run now), "
          f"{info['pending']} pending")
    return 0


def _cmd_bench_status(args: argparse.Namespace) -> int:
    from .analysis.bench import status

    _no_pilot_extension(args)
    info = status(args.profile, args.seed, pilot=args.pilot, seeds=args.add_seeds)
    what = "pilot" if args.pilot else "table" if args.add_seeds is None else \
        f"added seeds {','.join(map(str, args.add_seeds))}"
    print(f"bench ({what}): {info['done']}/{info['items']} done, {info['pending']} "
          f"pending ({info['stale']} with files of other settings); data {info['source']}, "
          f"encoder {info['weights_id']}; {info['folder']}")
    for cpu, spent in info["train_hours_by_cpu"].items():
        print(f"  trained on {cpu}: {spent['items']} items, {spent['hours']:.2f} h")
    return 0


def _cmd_bench_recheck(args: argparse.Namespace) -> int:
    from .analysis.bench import recheck

    for row in recheck(args.profile, args.n, args.seed, arch=args.arch):
        print(f"{row['arch']} seed {row['seed']}: test mIoU {row['test_miou_recorded']:.5f} recorded "
              f"({row['recorded_cpu']}, {row['recorded_sha']}), {row['test_miou_here']:.5f} here "
              f"({row['here_cpu']}); identical: {row['identical']}")
    return 0


def _cmd_bench_speed(args: argparse.Namespace) -> int:
    from .analysis.bench import as_profile, bench_dir
    from .analysis.bench_speed import profile_training_step, speed_table
    from .provenance import provenance, write_csv

    from .latency.quiet import watch

    profile = as_profile(args.profile)
    if not args.threads or not args.batch_sizes or 0 in args.threads + args.batch_sizes:
        raise ValueError(f"--threads and --batch-sizes need numbers >= 1, got {args.threads} and {args.batch_sizes}")
    with watch("training-step speed", max(args.threads), profile.latency.quiet) as load:
        rows = speed_table(profile_training_step(profile, batch_sizes=args.batch_sizes,
                                                 threads=args.threads, variants=tuple(args.variants.split(",")),
                                                 seed=args.seed, min_run_time=args.min_run_time))
    path = write_csv(bench_dir(profile) / "train_step.csv", rows,
                     provenance(profile.name, profile.to_dict(), machine_load=load.record))
    for r in rows:
        print(f"{r['arch_name']:>6} {r['variant']:>9} {r['threads']}t b{r['batch_size']}: "
              f"{r['ms_per_step']:8.1f} ms/step (iqr {r['iqr']:.1f}, n {r['n']}, x{r['speedup']:.2f}) {r['error']}")
    print(f"wrote {path}")
    return 0


def _user_error(err: BaseException) -> bool:
    """Whether ``err`` is one of the project's own errors about the input or the machine (a NaN
    loss, a write that failed, a search record that lacks an architecture): said in one line."""
    names = {"NonFiniteLossError", "WriteError", "OracleMiss"}  # by name: their modules need torch or numpy
    return any(cls.__name__ in names and cls.__module__.startswith("linas_lib.") for cls in type(err).__mro__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``linas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, OSError, KeyError) as err:
        if not isinstance(err, (ValueError, FileNotFoundError)) and not _user_error(err):
            raise  # a bug, not bad input: keep its traceback
        print(f"linas: error: {err}", file=sys.stderr)
        return 2
    except NoisyMachineError as err:
        print(f"linas: error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
