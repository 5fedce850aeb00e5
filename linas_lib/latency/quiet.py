"""Is this machine quiet enough to time latency? Load, CPU steal and busy processes around a measurement.

Timing on a busy machine gives wrong numbers without any error: rebuilding the cpu LUTs
while one other process ran on the same 2 cores turned a 210 ms cheapest architecture into
2472 ms (issue 9). So every LUT build and end-to-end pass is wrapped in :func:`watch`, which
records three readings into the result's provenance:

* ``before`` and ``after``: a :func:`snapshot` over ``sample_s`` seconds while this process
  sleeps: the cores busy with *other* work (``/proc/stat``), the share of CPU time stolen by
  the hypervisor, the 1/5/15-minute load averages and the busiest other processes;
* ``during``: the same core count over the whole measurement, with this process's own CPU
  time (all its threads) subtracted, so a job that starts and ends mid-build is seen too.

A reading is *quiet* when other work holds at most ``max_other_cores`` cores, steal is at
most ``max_steal``, and the thread count asked fits the cores this process may use. What
happens otherwise is the policy: ``warn`` (a loud warning, the default), ``refuse``
(:class:`NoisyMachineError`, the cpu and full profiles' setting) or ``off`` (record only).

Linux only (``/proc``); elsewhere the readings hold the load average alone and are never
judged noisy. Needs neither torch nor numpy: the GPU measuring box imports it.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLICIES = ("warn", "refuse", "off")
PROC = Path("/proc")
TOP_PROCESSES = 5  # busiest other processes kept in a snapshot
MIN_PROCESS_CORES = 0.05  # a process below this share of a core is not listed


class NoisyMachineError(RuntimeError):
    """The machine is too busy for the measurement asked, under policy ``refuse``."""


class NoisyMachineWarning(UserWarning):
    """The machine was too busy for the measurement asked, under policy ``warn``."""


@dataclass(frozen=True)
class QuietSettings:
    """The profile's ``latency.quiet`` section: when a machine counts as quiet, and what to do if not."""

    policy: str = "warn"  # warn | refuse | off
    max_other_cores: float = 0.25  # cores other processes may keep busy
    max_steal: float = 0.05  # share of CPU time the hypervisor may steal
    sample_s: float = 1.0  # length of the before/after snapshots

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"quiet policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        rules = (("max_other_cores", 0 <= self.max_other_cores < float("inf"), "a finite number >= 0"),
                 ("max_steal", 0 <= self.max_steal <= 1, "in [0, 1]"),
                 ("sample_s", 0 < self.sample_s < float("inf"), "a finite number > 0"))
        bad = [f"{name} = {getattr(self, name)!r} must be {rule}" for name, ok, rule in rules if not ok]
        if bad:  # each rule written so that NaN fails it
            raise ValueError(f"invalid quiet settings: {'; '.join(bad)}")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU times (clock ticks) at one instant: the whole machine and this process."""

    wall: float
    total: int
    idle: int
    steal: int
    own: int


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_times(proc: Path = PROC) -> CpuTimes | None:
    """The machine's and this process's CPU times now, or None without ``/proc``."""
    try:
        fields = (proc / "stat").read_text().splitlines()[0].split()[1:]
        own = _process_ticks((proc / "self" / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    # guest time is already counted in user time
    return CpuTimes(time.monotonic(), sum(ticks[:8]), idle, steal, own)


def _process_ticks(stat_line: str) -> int:
    """utime + stime of a ``/proc/<pid>/stat`` line (the name in parentheses may hold spaces)."""
    rest = stat_line.rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def load_between(a: CpuTimes, b: CpuTimes, cores: int) -> dict:
    """Cores busy with other work and the steal share between two readings (pure function)."""
    total = max(b.total - a.total, 1)  # ticks of all cores together
    wall = max(b.wall - a.wall, 1e-9)
    busy_cores = (total - (b.idle - a.idle)) / total * cores
    own_cores = (b.own - a.own) / total * cores
    return {"seconds": round(wall, 3), "other_cores": round(max(busy_cores - own_cores, 0.0), 3),
            "own_cores": round(own_cores, 3), "steal_share": round((b.steal - a.steal) / total, 4)}


def busy_processes(sample_s: float, proc: Path = PROC) -> tuple[list[dict], dict | None]:
    """The other processes busiest over ``sample_s`` seconds of sleep, and the machine's load then."""
    first, start = _process_table(proc), read_times(proc)
    time.sleep(sample_s)
    second, end = _process_table(proc), read_times(proc)
    cores = usable_cores()
    load = load_between(start, end, cores) if start and end else None
    tick_rate = (end.total - start.total) / max(end.wall - start.wall, 1e-9) / cores if start and end else 100.0
    me = os.getpid()
    rows = []
    for pid, (name, ticks) in second.items():
        if pid == me or pid not in first:
            continue
        share = (ticks - first[pid][1]) / max(tick_rate * sample_s, 1e-9)
        if share >= MIN_PROCESS_CORES:
            rows.append({"pid": pid, "name": name, "cores": round(share, 2)})
    rows.sort(key=lambda r: -r["cores"])
    return [{**r, "command": _command(proc, r["pid"])} for r in rows[:TOP_PROCESSES]], load


def _command(proc: Path, pid: int, limit: int = 80) -> str:
    """The process's command line, shortened (empty when unreadable)."""
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:limit]
    except OSError:
        return ""


def _process_table(proc: Path) -> dict[int, tuple[str, int]]:
    table = {}
    for entry in proc.glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
            table[int(entry.parent.name)] = (text[text.index("(") + 1:text.rindex(")")], _process_ticks(text))
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we read
    return table


def snapshot(sample_s: float = 1.0, proc: Path = PROC) -> dict:
    """Load averages, cores busy with other work, steal share and busiest other processes now."""
    processes, load = busy_processes(sample_s, proc)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": usable_cores()}
    try:
        record["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if load is not None:
        record.update(other_cores=load["other_cores"], steal_share=load["steal_share"], processes=processes)
    return record


def problems(reading: dict, threads: int, settings: QuietSettings) -> list[str]:
    """Why a reading is not quiet enough for ``threads`` timing threads (empty: it is)."""
    found = []
    cores = reading.get("cores", usable_cores())
    if threads > cores:
        found.append(f"{threads} threads asked on {cores} usable cores (oversubscribed)")
    other = reading.get("other_cores")
    if other is not None and other > settings.max_other_cores:
        names = ", ".join(f"{p.get('command') or p['name']} (pid {p['pid']}, {p['cores']:.2f} cores)" for p in reading.get("processes", []))
        found.append(f"other work keeps {other:.2f} cores busy (limit {settings.max_other_cores:g})"
                     + (f": {names}" if names else ""))
    steal = reading.get("steal_share")
    if steal is not None and steal > settings.max_steal:
        found.append(f"the hypervisor steals {steal:.1%} of CPU time (limit {settings.max_steal:.0%})")
    return found


def judge(reading: dict, what: str, when: str, threads: int, settings: QuietSettings,
          refuse: bool = True) -> None:
    """Apply the policy to one reading: nothing, a :class:`NoisyMachineWarning`, or an error.

    ``refuse=False`` downgrades ``refuse`` to a warning (a reading after the results exist).
    """
    found = problems(reading, threads, settings)
    reading["quiet"] = not found
    if not found or settings.policy == "off":
        return
    message = f"{what}: machine not quiet {when}: " + "; ".join(found) + ". Timings taken under load are not comparable"
    if settings.policy == "refuse" and refuse:
        raise NoisyMachineError(message + "; stop the other work and rerun (it resumes), "
                                "or set latency.quiet.policy to 'warn' to measure anyway")
    log.warning(message)
    warnings.warn(message, NoisyMachineWarning, stacklevel=3)


class LoadWatch:
    """The load record of one measurement; :meth:`check` guards each checkpoint of it."""

    def __init__(self, what: str, threads: int, settings: QuietSettings):
        self.what, self.threads, self.settings = what, int(threads), settings
        self.record: dict = {"what": what, "threads": self.threads, "settings": asdict(settings), "noisy": []}

    def mark(self) -> CpuTimes | None:
        """CPU times now: pass it to :meth:`check` after the timed work."""
        return read_times()

    def check(self, since: CpuTimes | None, label: str) -> None:
        """Judge the load since ``since`` (this process excluded) before its results are kept.

        Raises:
            NoisyMachineError: under ``refuse``; the caller has not stored the interval's results.
        """
        now = read_times()
        if self.settings.policy == "off" or since is None or now is None:
            return
        reading = {"cores": usable_cores(), **load_between(since, now, usable_cores())}
        if problems(reading, self.threads, self.settings):
            self.record["noisy"].append({"at": label, **reading})
        judge(reading, self.what, f"while timing {label}", self.threads, self.settings)


@contextmanager
def watch(what: str, threads: int, settings: QuietSettings | None = None) -> Iterator[LoadWatch]:
    """Judge the machine before a measurement and record it during and after.

    Args:
        what: the measurement, for messages (``"LUT cpu-torch-2t"``).
        threads: the most threads the measurement times with.
        settings: thresholds and policy (default :class:`QuietSettings`).

    Yields:
        A :class:`LoadWatch`; its ``record`` (``what, threads, settings, before, during,
        after, noisy``) is complete when the block ends. Each reading carries ``"quiet"``.

    Raises:
        NoisyMachineError: under policy ``refuse`` when the machine is busy before the block
            (nothing is timed); inside the block from :meth:`LoadWatch.check`. The reading
            after the block only warns: the results exist by then and each checkpoint was judged.
    """
    settings = settings or QuietSettings()
    load = LoadWatch(what, threads, settings)
    if settings.policy != "off":
        load.record["before"] = snapshot(settings.sample_s)
        judge(load.record["before"], what, "before the measurement", threads, settings)
    start = read_times()
    yield load
    end = read_times()
    if start and end:
        load.record["during"] = {"cores": usable_cores(), **load_between(start, end, usable_cores())}
    if settings.policy != "off":
        load.record["after"] = snapshot(settings.sample_s)
        if "during" in load.record:
            judge(load.record["during"], what, "during the measurement", threads, settings, refuse=False)
        judge(load.record["after"], what, "after the measurement", threads, settings, refuse=False)
