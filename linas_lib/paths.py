"""Where things go: project root, results, figures and the on-disk cache."""

from __future__ import annotations

import os
from pathlib import Path

from .numerics import cache_subdir


def project_root() -> Path:
    """The project's root: ``LINAS_ROOT`` if set, else the folder above this package."""
    env = os.environ.get("LINAS_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def display_path(path: str | Path) -> str:
    """``path`` as recorded in results: relative to the project root when inside it, so that
    committed files do not carry one machine's checkout location; absolute otherwise."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def results_dir(profile: str, notebook: str) -> Path:
    """``results/<profile>/<notebook>/``, created."""
    path = project_root() / "results" / profile / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(profile: str) -> Path:
    """``figures/<profile>/``, created."""
    path = project_root() / "figures" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """A folder of the on-disk cache (``LINAS_CACHE_DIR`` or ``<root>/.cache``; under
    ``portable/`` there in portable numerics, :mod:`linas_lib.numerics`), created."""
    base = Path(os.environ.get("LINAS_CACHE_DIR") or project_root() / ".cache").joinpath(*cache_subdir())
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve(path: str | Path) -> Path:
    """A profile path: absolute as given, relative ones from the project root."""
    path = Path(path)
    return path if path.is_absolute() else project_root() / path
