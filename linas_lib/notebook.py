"""What a notebook calls first: :func:`start` gives a :class:`Run` that knows the profile,
the seed, where results and figures go, and writes them with provenance.

Typical notebook::

    run = notebook.start("00_data", profile, seed)
    run.write_table("datasets", rows)           # results/<profile>/00_data/datasets.{csv,tex}
    run.save_figure(fig, "data_samples")        # figures/<profile>/data_samples.{png,pdf}
    run.write_summary({"n_train": 40})          # results/<profile>/00_data/summary.json
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import provenance as prov
from .keys import atomic_write, atomic_write_text
from .config import Profile, load_profile
from .paths import figures_dir, results_dir


@dataclass
class Run:
    """One execution of one notebook under one profile and seed."""

    notebook: str
    profile: Profile
    seed: int
    # the commit when the run began, which every output records: a commit made while a long
    # run goes on is not the code it runs (its modules were loaded before)
    sha: str = field(default_factory=lambda: prov.git_sha())

    @property
    def results(self) -> Path:
        """``results/<profile>/<notebook>/``."""
        return results_dir(self.profile.name, self.notebook)

    @property
    def figures(self) -> Path:
        """``figures/<profile>/``."""
        return figures_dir(self.profile.name)

    def provenance(self, **extra) -> dict:
        """Provenance block for a file written by this run: ``git_sha`` the commit it began at,
        and ``git_sha_at_write`` where the working tree has moved on since."""
        now = prov.git_sha()
        moved = {"git_sha_at_write": now} if now != self.sha else {}
        return prov.provenance(self.profile.name, self.profile.to_dict(), sha=self.sha, notebook=self.notebook,
                               seed=self.seed, **moved, **extra)

    def rng(self, *stream: int) -> np.random.Generator:
        """A generator for one named random stream of this run (same seed, same numbers)."""
        return np.random.default_rng([self.seed, *stream])

    def write_json(self, name: str, data: dict) -> Path:
        """``results/.../<name>.json`` with provenance."""
        return prov.write_json(self.results / f"{name}.json", data, self.provenance())

    def write_csv(self, name: str, rows: list[dict]) -> Path:
        """``results/.../<name>.csv`` with a provenance header line."""
        return prov.write_csv(self.results / f"{name}.csv", rows, self.provenance())

    def read_csv(self, name: str) -> list[dict]:
        """Rows of ``results/.../<name>.csv`` as written by :meth:`write_csv` (plots read these)."""
        import pandas as pd

        try:
            return pd.read_csv(self.results / f"{name}.csv", comment="#").to_dict("records")
        except pd.errors.EmptyDataError:  # written from no rows: a header-less file
            return []

    def read_json(self, name: str) -> dict:
        """``results/.../<name>.json`` as written by :meth:`write_json`, without its provenance."""
        from .keys import load_json

        path = self.results / f"{name}.json"
        data = load_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: " + ("missing: run the notebook that writes it" if data is None
                                            else f"a JSON {type(data).__name__}, not an object"))
        data.pop("provenance", None)
        return data

    def write_table(self, name: str, rows: list[dict], float_format: str = "%.3g") -> Path:
        """A paper table: CSV (with provenance) plus a LaTeX ``tabular`` beside it."""
        import pandas as pd

        path = self.write_csv(name, rows)
        latex = pd.DataFrame(rows).to_latex(index=False, float_format=float_format.__mod__)
        atomic_write_text(self.results / f"{name}.tex", f"% {self.notebook} @ {self.sha}\n{latex}")
        return path

    def save_figure(self, fig, name: str) -> list[Path]:
        """Save a matplotlib figure as ``figures/<profile>/<name>.png`` and ``.pdf``."""
        paths = []
        for ext in ("png", "pdf"):
            path = self.figures / f"{name}.{ext}"
            atomic_write(path, lambda tmp, ext=ext: fig.savefig(
                tmp, format=ext, dpi=150, bbox_inches="tight", metadata=None if ext == "png" else {"CreationDate": None}))
            paths.append(path)
        return paths

    def write_summary(self, figures: dict[str, float]) -> Path:
        """``summary.json``: flat ``name: number`` headline figures of this notebook; then
        ``results/<profile>/macros.tex`` and ``goals.md`` are regenerated
        (:func:`linas_lib.paper.write_macros`, :func:`linas_lib.paper.write_goals`).

        Raises:
            ValueError: a value that is not a number (nested dicts must be flattened
                into dotted names first, see :func:`flatten`).
        """
        for key, value in figures.items():
            if value is not None and not isinstance(value, numbers.Real):
                raise ValueError(f"summary value {key!r} must be a number, got {value!r}")
        clean = {k: (None if v is None or not math.isfinite(float(v)) else float(v)) for k, v in figures.items()}
        path = prov.write_json(self.results / "summary.json", {"figures": clean}, self.provenance())
        from .paper import write_goals, write_macros

        write_macros(self.profile.name)
        try:  # the summary is written: a goals-table bug must not fail hours of compute
            write_goals(self.profile.name)
        except (ValueError, KeyError, TypeError) as err:
            warnings.warn(f"results/{self.profile.name}/goals.md not rewritten: {err}; run `linas goals`", stacklevel=2)
        return path


def flatten(nested: dict, prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` for :meth:`Run.write_summary`."""
    flat = {}
    for key, value in nested.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def start(notebook: str, profile: str = "cpu", seed: int = 0) -> Run:
    """Begin a notebook run: load the profile, pin torch's thread count, make the folders."""
    loaded = load_profile(profile)
    try:
        import torch

        torch.set_num_threads(loaded.threads)
    except ImportError:
        pass
    return Run(notebook=notebook, profile=loaded, seed=int(seed))
