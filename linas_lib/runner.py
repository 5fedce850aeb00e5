"""Execute a notebook headlessly with papermill and render it to HTML with nbconvert.

The profile is loaded and its LUT files are checked *before* papermill starts
(:func:`check_profile`), so a bad profile is one clear error naming the file and nothing
is created under ``results/``. The executed copy goes to
``results/<profile>/executed/<name>.ipynb`` (kept even when a cell fails, so the error is
readable) and its HTML rendering beside it; a failing cell raises :class:`NotebookFailed`.
"""

from __future__ import annotations

from pathlib import Path

from .config import PROFILE_DIR, Profile, load_profile, profile_path
from .paths import project_root


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the cell, the error and the executed copy."""

    def __init__(self, name: str, cell, ename: str, evalue: str, executed: Path):
        evalue = " ".join(str(evalue).split())
        super().__init__(f"notebook {name} failed in cell {cell}: {ename}: {evalue}; executed copy: {executed}")
        self.name, self.executed = name, executed


def notebook_path(name: str) -> Path:
    """``notebooks/<name>.ipynb``, with a clear error listing the notebooks if absent."""
    folder = project_root() / "notebooks"
    path = folder / f"{Path(name).stem}.ipynb"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.ipynb")))
        raise FileNotFoundError(f"no notebook {path} (known: {known})")
    return path


def load_profile_named(profile: str | Path) -> Profile:
    """:func:`~linas_lib.config.load_profile`, its errors always starting with the file.

    Raises:
        ValueError: ``"<file>: <what is wrong>"`` (torch-free).
    """
    path = profile_path(profile)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ValueError(f"{path}: no such profile file (known profiles: {known})")
    try:
        return load_profile(profile)
    except ValueError as err:
        raise ValueError(_with_file(path, err)) from err


def check_luts(profile: Profile, path: str | Path) -> None:
    """Raise if a target's kind is unknown or its committed/GPU/external LUT file is missing.

    Optional targets may lack their file; local targets without ``lut:`` are measured on this
    machine. Imports :mod:`linas_lib.latency.targets` (and so torch) only when a target
    names a LUT file.

    Raises:
        ValueError: ``"<profile file>: target <name>: LUT file <path> does not exist"``.
    """
    named = [t for t in profile.latency.targets if t.kind != "local" or t.lut]
    if not named:
        return
    from .latency.targets import target_lut_path

    for target in named:
        try:
            lut = target_lut_path(profile, target)
        except ValueError as err:
            raise ValueError(_with_file(path, err)) from err
        where = f"{path}: target {target.name}: LUT file {_short(lut)} does not exist"
        if lut.is_dir():
            raise ValueError(f"{where} (a directory is there)")
        if not lut.exists() and not target.optional:
            raise ValueError(where)


def check_profile(profile: str | Path) -> Profile:
    """Load a profile and check its LUT files: everything that can fail before papermill."""
    loaded = load_profile_named(profile)
    check_luts(loaded, profile_path(profile))
    return loaded


def _with_file(path: Path, err: Exception) -> str:
    """``err``'s message, prefixed by ``path`` unless it already starts with it."""
    message = str(err)
    return message if message.startswith(str(path)) else f"{path}: {message}"


def _short(path: Path) -> str:
    """``path`` relative to the project root where it lies inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def run_notebook(name: str, profile: str = "cpu", seed: int = 0, html: bool = True) -> Path:
    """Run one notebook with papermill under ``profile``/``seed``.

    Returns:
        Path of the executed notebook.

    Raises:
        ValueError: a bad profile or a missing LUT file (nothing is created then).
        NotebookFailed: a cell raised; the executed copy holds the traceback.
    """
    from papermill.exceptions import PapermillExecutionError

    loaded = check_profile(profile)
    source = notebook_path(name)
    out_dir = project_root() / "results" / loaded.name / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / source.name
    try:
        _execute(source, executed, profile, seed)
    except PapermillExecutionError as err:
        cell = err.exec_count if err.exec_count is not None else err.cell_index
        raise NotebookFailed(source.stem, cell, err.ename, err.evalue, executed) from err
    if html:
        render_html(executed)
    return executed


def _execute(source: Path, executed: Path, profile: str, seed: int) -> None:
    """papermill itself: ``source`` -> ``executed`` with the parameters injected."""
    import papermill

    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters={"profile": _profile_arg(profile), "seed": int(seed)},
        cwd=str(source.parent),
        progress_bar=False,
        kernel_name="python3",
    )


def _profile_arg(profile: str | Path) -> str:
    """The profile as the kernel must see it: a name, or an absolute path (the kernel runs in
    ``notebooks/``, so a relative YAML path would resolve there)."""
    path = profile_path(profile)
    return str(path.resolve()) if path.parent != PROFILE_DIR else str(profile)


def render_html(executed: Path) -> Path:
    """Render an executed notebook to HTML beside it."""
    import nbconvert
    import nbformat

    from .keys import atomic_write_text

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target = executed.with_suffix(".html")
    atomic_write_text(target, body)
    return target
