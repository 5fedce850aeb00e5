"""How one LUT entry is timed: the settings shared by profiles, the CLI and the harness.

Plain dataclass, no torch or yaml, so :mod:`linas_lib.config` can type the profile's
``latency.measure`` section with it and the measuring core can import it on a GPU box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TARGET_KINDS = ("local", "gpu", "external")  # measured here | on a lent GPU | an external device's table
SCOPES = ("end-to-end", "decoder-only")  # what a target's latency (and its LUT) covers


@dataclass(frozen=True)
class MeasureSettings:
    """How to time one entry: the profile's ``latency.measure`` section and ``linas lut build``'s flags."""

    warmup: int = 10
    repeats: int = 30
    max_cv: float = 0.1
    max_retries: int = 2
    max_time_ms: float = 0.0  # > 0: cap repeats so one entry's timed runs take about this long
    min_repeats: int = 3  # floor of the capped repeats
    # > 0: read this many MiB before each timed call (see measure.cache_evictor); 0 keeps the
    # keys of LUTs cached before the setting existed
    evict_mib: int = field(default=0, metadata={"key": "unless_default"})

    def __post_init__(self):
        # each rule written so that NaN fails it
        rules = (("warmup", self.warmup >= 0, ">= 0"), ("repeats", self.repeats >= 1, ">= 1"),
                 ("max_cv", self.max_cv > 0 and self.max_cv != float("inf"), "a finite number > 0"),
                 ("max_retries", self.max_retries >= 0, ">= 0"),
                 ("max_time_ms", 0 <= self.max_time_ms < float("inf"), "a finite number >= 0 (0: no cap)"),
                 ("min_repeats", self.min_repeats >= 1, ">= 1"),
                 ("evict_mib", not isinstance(self.evict_mib, bool) and isinstance(self.evict_mib, int)
                  and self.evict_mib >= 0, "a whole number of MiB >= 0"))
        bad = [f"{name} = {getattr(self, name)!r} must be {rule}" for name, ok, rule in rules if not ok]
        if bad:
            raise ValueError(f"invalid measurement settings: {'; '.join(bad)}")

    def plan(self, first_ms: float) -> tuple[int, int]:
        """``(warmup, repeats)`` for an entry whose first (untimed) call took ``first_ms``.

        Without ``max_time_ms`` the fixed counts; with it, big entries get fewer repeats
        (at least ``min_repeats``) and proportionally fewer warm-ups (at least one), while
        small, noisier entries keep the full counts.
        """
        if self.max_time_ms <= 0:
            return self.warmup, self.repeats
        repeats = int(min(self.repeats, max(min(self.min_repeats, self.repeats), self.max_time_ms / max(first_ms, 1e-6))))
        warmup = min(self.warmup, max(1, round(self.warmup * repeats / self.repeats)))
        return warmup, repeats
