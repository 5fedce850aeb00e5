"""Fetch and verify real datasets: ``linas data fetch crackforest DEST``.

CrackForest (Shi et al. 2016; Cui et al. 2015; non-commercial research use only) is taken
from the public repository ``cuilimeng/CrackForest-dataset`` at a pinned commit: either
downloaded as GitHub's zip of that commit, or from a local copy (``--archive``: a .zip, a
.tar/.tar.gz or an already-extracted folder) for machines without internet access.

Every file the project uses is checked against the sha256 list shipped in the package
(``data_sums/crackforest.SHA256SUMS``, one ``<sha256>  ./<path>`` a line): a missing or
altered file is an error naming it, files not in the list are ignored (not copied). The
copy is atomic: it is assembled and verified in a temporary folder next to ``DEST`` and
only then renamed to ``DEST``, so ``DEST`` is either absent, the previous content, or a
complete verified copy. Archives are extracted member by member: absolute paths, ``..``
components, links and special files are refused before anything is written.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

CRACKFOREST_REPO = "cuilimeng/CrackForest-dataset"
CRACKFOREST_COMMIT = "ed57c2d96754e6c7d105805cd29aeeb3a799f267"
CRACKFOREST_URL = f"https://codeload.github.com/{CRACKFOREST_REPO}/zip/{CRACKFOREST_COMMIT}"
CRACKFOREST_SUMS = Path(__file__).resolve().parent / "data_sums" / "crackforest.SHA256SUMS"
CRACKFOREST_LICENCE = (
    "CrackForest is licensed for non-commercial research purposes only. If you use it, cite\n"
    "  Y. Shi, L. Cui, Z. Qi, F. Meng, Z. Chen: Automatic road crack detection using random structured\n"
    "    forests. IEEE Transactions on Intelligent Transportation Systems 17(12):3434-3445, 2016;\n"
    "  L. Cui, Z. Qi, Z. Chen, F. Meng, Y. Shi: Pavement distress detection using random decision\n"
    "    forests. International Conference on Data Science (ICDS), Springer, pp. 95-102, 2015."
)
DOWNLOAD_TIMEOUT_S = 60.0  # per blocking socket operation (connect, each read)
DATASETS = ("crackforest",)
_CHUNK = 1 << 20
_SHOWN_PROBLEMS = 10


class FetchError(ValueError):
    """A download, archive or verification failed; the message names the URL/file."""


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_crackforest` did.

    Attributes:
        dest: the dataset folder (absolute).
        status: ``"fetched"`` (written now) or ``"present"`` (already a verified copy).
        n_files: files verified against the pinned list.
        source: the URL, archive or folder it came from (``dest`` when present).
    """

    dest: Path
    status: str
    n_files: int
    source: str


# ---------------------------------------------------------------------------------------
# The pinned sha256 list and verification
# ---------------------------------------------------------------------------------------


def read_sums(path) -> dict[str, str]:
    """Parse a ``sha256sum`` file: ``{relative posix path: lowercase hex digest}``.

    Raises:
        FetchError: an unreadable file, a malformed line, a path listed twice, or a path that
            is absolute or holds ``..`` (naming the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FetchError(f"{path}: cannot read the sha256 list ({err})") from err
    sums: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise FetchError(f"{path}:{number}: not a '<sha256>  <path>' line: {line!r}")
        name = _relative_name(parts[1].lstrip("*"))
        if name is None:
            raise FetchError(f"{path}:{number}: path {parts[1]!r} must be relative, without '..'")
        if name in sums:
            raise FetchError(f"{path}:{number}: {name} is listed twice")
        sums[name] = digest
    if not sums:
        raise FetchError(f"{path}: the sha256 list is empty")
    return sums


def pinned_sums() -> dict[str, str]:
    """The pinned per-file sha256 list of CrackForest at :data:`CRACKFOREST_COMMIT`."""
    return read_sums(CRACKFOREST_SUMS)


def _relative_name(name: str) -> str | None:
    """``name`` as a clean relative posix path (``./`` dropped), or None if it escapes."""
    text = name.replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(name).drive:
        return None
    parts = PurePosixPath(text).parts
    if ".." in parts:
        return None
    return "/".join(p for p in parts if p != ".")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_tree(root, sums: dict[str, str]) -> list[str]:
    """Problems of ``root`` against ``sums``: ``"<path>: missing"`` or a sha256 mismatch.

    An empty list means every listed file is present with its pinned content; files not
    in the list are ignored.
    """
    root = Path(root)
    problems = []
    for name, expected in sorted(sums.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        got = _sha256(path)
        if got != expected:
            problems.append(f"{name}: sha256 mismatch (got {got[:12]}..., pinned {expected[:12]}...)")
    return problems


def _problems_message(where: str, problems: list[str], n_files: int) -> str:
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = f"; ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    return (
        f"{where}: {len(problems)} of {n_files} files fail verification against the pinned sha256 list "
        f"({CRACKFOREST_REPO} @ {CRACKFOREST_COMMIT[:7]}): {shown}{more}"
    )


# ---------------------------------------------------------------------------------------
# Download and safe extraction
# ---------------------------------------------------------------------------------------


def download(url: str, path: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream ``url`` into the file ``path``.

    Raises:
        urllib.error.URLError, OSError, http.client.HTTPException: offline, refused,
            timed out, HTTP error (turned into one :class:`FetchError` by the caller).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "linas-data-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def _download_or_fail(url: str, path: Path, timeout: float) -> None:
    try:
        download(url, path, timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        plain_url_error = isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError)
        reason = str(err.reason if plain_url_error else err) or type(err).__name__
        raise FetchError(f"cannot download {url}: {reason}; download it elsewhere and pass --archive") from err


def _member_target(into: Path, name: str, archive: Path) -> Path:
    rel = _relative_name(name)
    if rel is None:
        raise FetchError(f"{archive}: archive member {name!r} escapes the destination folder; refusing to extract")
    target = into.joinpath(*rel.split("/")) if rel else into
    if not target.resolve().is_relative_to(into.resolve()):
        raise FetchError(f"{archive}: archive member {name!r} escapes the destination folder; refusing to extract")
    return target


def extract_archive(archive, into) -> None:
    """Extract a .zip or .tar(.gz/.bz2/.xz) ``archive`` into the folder ``into``, safely.

    Every member is checked before anything is written: absolute paths, ``..`` and
    (tar) links or special files are refused. Only regular files and folders are
    written, with default permissions.

    Raises:
        FetchError: not an archive, a corrupt archive, or a refused member (named).
    """
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, into)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, into)
        else:
            raise FetchError(f"{archive}: not a .zip or .tar(.gz) archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise FetchError(f"{archive}: corrupt archive ({err})") from err


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        entries = []
        for info in zf.infolist():
            target = _member_target(into, info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise FetchError(f"{archive}: archive member {info.filename!r} is a link; refusing to extract")
            entries.append((target, info.is_dir(), lambda info=info: zf.open(info)))
        _write_entries(entries)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        entries = []
        for member in tf.getmembers():
            target = _member_target(into, member.name, archive)
            if not (member.isfile() or member.isdir()):
                kind = "a link" if member.issym() or member.islnk() else "not a regular file or folder"
                raise FetchError(f"{archive}: archive member {member.name!r} is {kind}; refusing to extract")
            entries.append((target, member.isdir(), lambda member=member: tf.extractfile(member)))
        _write_entries(entries)


def _write_entries(entries) -> None:
    """Write checked archive entries ``(target, is_dir, open_source)``: nothing is written
    until every entry of the archive has passed its checks."""
    for target, is_dir, open_source in entries:
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_source() as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def find_dataset_root(folder, label: str | None = None) -> Path:
    """The CrackForest root (the folder holding ``image/`` and ``groundTruth/``): ``folder``
    itself or one of its sub-folders (GitHub archives nest everything one level down).

    Raises:
        FetchError: no such folder, or several candidates (naming ``label`` or ``folder``).
    """
    folder = Path(folder)
    label = label or str(folder)

    def is_root(path: Path) -> bool:
        return (path / "image").is_dir() and (path / "groundTruth").is_dir()

    if is_root(folder):
        return folder
    found = [p for p in sorted(folder.iterdir()) if p.is_dir() and is_root(p)] if folder.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise FetchError(f"{label}: several CrackForest folders ({names}); pass the one to use")
    raise FetchError(f"{label}: no CrackForest folder (one holding image/ and groundTruth/) at its top "
                     "or one level down")


# ---------------------------------------------------------------------------------------
# The fetch itself
# ---------------------------------------------------------------------------------------


def _copy_verified(root: Path, staging: Path, sums: dict[str, str]) -> list[str]:
    """Copy the listed files of ``root`` into ``staging``, hashing the bytes written."""
    problems = []
    for name, expected in sorted(sums.items()):
        src = root / name
        if not src.is_file():
            problems.append(f"{name}: missing")
            continue
        dst = staging / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            for block in iter(lambda: fin.read(_CHUNK), b""):
                digest.update(block)
                fout.write(block)
        if digest.hexdigest() != expected:
            problems.append(f"{name}: sha256 mismatch (got {digest.hexdigest()[:12]}..., pinned {expected[:12]}...)")
    return problems


def _looks_replaceable(dest: Path) -> bool:
    """``--force`` may replace ``dest``: empty, or an (invalid) CrackForest copy."""
    if not dest.is_dir():
        return False
    return not any(dest.iterdir()) or (dest / "image").is_dir() or (dest / "groundTruth").is_dir()


def fetch_crackforest(
    dest,
    archive=None,
    *,
    force: bool = False,
    sums: dict[str, str] | None = None,
    url: str = CRACKFOREST_URL,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    say: Callable[[str], None] | None = None,
) -> FetchResult:
    """Put a verified copy of CrackForest into ``dest``.

    Args:
        dest: the dataset folder to create (its parent is created if missing).
        archive: None (download ``url``), a local .zip/.tar(.gz) archive, or an extracted
            folder; the dataset may sit at its top or one folder down.
        force: replace an existing ``dest`` (a valid copy, or an invalid CrackForest copy).
        sums: ``{path: sha256}`` to verify against; default the pinned list.
        url: what to download when ``archive`` is None.
        timeout: socket timeout of the download, seconds.
        say: called with progress lines (``downloading ...``); default silent.

    Returns:
        What was done: ``status="present"`` when ``dest`` already is a verified copy and
        ``force`` is off (nothing written), else ``"fetched"``.

    Raises:
        FetchError: offline/failed download, a bad archive or member, no dataset root, a
            missing or altered file (named), or a ``dest`` that may not be replaced.
    """
    sums = pinned_sums() if sums is None else sums
    say = say or (lambda _line: None)
    dest = Path(dest).expanduser().absolute()
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise FetchError(f"{dest}: exists and is not a folder; choose another destination")
        empty = not any(dest.iterdir())
        problems = [] if empty else verify_tree(dest, sums)
        if not empty and not problems and not force:
            return FetchResult(dest, "present", len(sums), str(dest))
        if problems:
            if not force:
                raise FetchError(_problems_message(f"{dest} exists but is not a verified copy", problems, len(sums))
                                 + "; pass --force to replace it")
            if not _looks_replaceable(dest):
                raise FetchError(f"{dest}: a non-empty folder that is not a CrackForest copy (no image/ or "
                                 "groundTruth/); refusing to replace it even with --force; choose a new folder")
    if archive is not None:
        archive = Path(archive).expanduser().absolute()
        if not archive.exists():
            raise FetchError(f"{archive}: archive or folder not found")
        if archive == dest or archive.is_relative_to(dest):
            raise FetchError(f"{archive}: lies inside the destination {dest}; move it out or choose another DEST")

    parent = dest.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=parent))
    done = False
    try:
        if archive is None:
            say(f"downloading {url} (timeout {timeout:g} s) ...")
            archive_file = tmp / "download"
            _download_or_fail(url, archive_file, timeout)
            label, source = url, url
            extract_archive(archive_file, tmp / "extracted")
            root = find_dataset_root(tmp / "extracted", label)
        elif archive.is_dir():
            label, source = str(archive), str(archive)
            root = find_dataset_root(archive, label)
        else:
            label, source = str(archive), str(archive)
            extract_archive(archive, tmp / "extracted")
            root = find_dataset_root(tmp / "extracted", label)
        staging = tmp / "dataset"
        staging.mkdir()
        problems = _copy_verified(root, staging, sums)
        if problems:
            raise FetchError(_problems_message(f"crackforest from {label}", problems, len(sums)))
        previous = None
        if dest.exists():
            previous = tmp / "previous"
            os.replace(dest, previous)
        try:
            os.replace(staging, dest)
        except OSError:
            if previous is not None:
                os.replace(previous, dest)
            raise
        done = True
        return FetchResult(dest, "fetched", len(sums), source)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for path in created:  # the deepest first: leave no empty folders behind
                try:
                    path.rmdir()
                except OSError:
                    break


def fetch_report(result: FetchResult) -> str:
    """What the CLI prints after a fetch: outcome, licence, how to use it in a profile."""
    if result.status == "present":
        head = (f"{result.dest}: already a verified CrackForest copy ({result.n_files} files match the pinned "
                "sha256 list); nothing done (--force replaces it)")
    else:
        head = (f"fetched CrackForest ({CRACKFOREST_REPO} @ {CRACKFOREST_COMMIT[:7]}) from {result.source} "
                f"into {result.dest}: {result.n_files} files verified against the pinned sha256 list")
    use = (f"to use it, set in a profile:  data: {{source: crackforest, crackforest_dir: {result.dest}}}\n"
           "(source: auto picks it too whenever crackforest_dir points at an existing folder)")
    return f"{head}\n{CRACKFOREST_LICENCE}\n{use}"
