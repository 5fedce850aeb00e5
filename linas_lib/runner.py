"""Execute a notebook headlessly with papermill and render it to HTML with nbconvert.

The executed copy goes to ``results/<profile>/executed/<name>.ipynb`` (kept even when a
cell fails, so the error is readable) and its HTML rendering beside it.
"""

from __future__ import annotations

from pathlib import Path

from .config import profile_path
from .paths import project_root


def notebook_path(name: str) -> Path:
    """``notebooks/<name>.ipynb``, with a clear error listing the notebooks if absent."""
    folder = project_root() / "notebooks"
    path = folder / f"{Path(name).stem}.ipynb"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.ipynb")))
        raise FileNotFoundError(f"no notebook {path} (known: {known})")
    return path


def run_notebook(name: str, profile: str = "cpu", seed: int = 0, html: bool = True) -> Path:
    """Run one notebook with papermill under ``profile``/``seed``.

    Returns:
        Path of the executed notebook.
    """
    import papermill

    source = notebook_path(name)
    if not profile_path(profile).is_file():
        raise FileNotFoundError(f"profile {profile!r} not found at {profile_path(profile)}")
    profile_name = profile_path(profile).stem
    out_dir = project_root() / "results" / profile_name / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / source.name
    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters={"profile": str(profile), "seed": int(seed)},
        cwd=str(source.parent),
        progress_bar=False,
        kernel_name="python3",
    )
    if html:
        render_html(executed)
    return executed


def render_html(executed: Path) -> Path:
    """Render an executed notebook to HTML beside it."""
    import nbconvert
    import nbformat

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target = executed.with_suffix(".html")
    target.write_text(body)
    return target
