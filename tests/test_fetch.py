"""``linas data fetch crackforest``: archives, folders, verification, safety, offline errors.

Everything runs on small synthesized trees (no network, no download); the tests marked
with ``shared_data`` also check the pinned list against the real files in ../shared/data.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import pytest

from linas_lib import cli, fetch
from linas_lib.fetch import FetchError

TOP = "CrackForest-dataset-0123456"  # GitHub archives nest the repository one folder down
FILES = {
    "README.md": b"CrackForest test copy\n",
    "image/001.jpg": b"\xff\xd8 fake jpeg 001",
    "image/002.jpg": b"\xff\xd8 fake jpeg 002",
    "groundTruth/001.mat": b"MATLAB 5.0 fake label 001",
    "seg/001.seg": b"format ascii cr\n",
}


def _tree(root: Path, files=FILES) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def _sums(files=FILES) -> dict[str, str]:
    return {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}


def _write_sums(path: Path, files=FILES) -> Path:
    path.write_text("".join(f"{digest}  ./{name}\n" for name, digest in _sums(files).items()))
    return path


def _zip(path: Path, files=FILES, top=TOP) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/", b"")
        for name, content in files.items():
            zf.writestr(f"{top}/{name}", content)
        zf.writestr(f"{top}/extra/notes.txt", b"not in the pinned list")
    return path


def _targz(path: Path, files=FILES, top=TOP) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, content in {**files, "extra/notes.txt": b"not in the pinned list"}.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return path


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".fetch-" in p.name)


# --- the pinned list ---------------------------------------------------------------------


def test_pinned_list_covers_the_dataset():
    sums = fetch.pinned_sums()
    assert len(sums) == 392  # README + 155 images + 118 labels + 118 seg files
    assert sum(n.startswith("image/") for n in sums) == 155
    assert sum(n.startswith("groundTruth/") for n in sums) == 118
    assert "README.md" in sums and all(len(d) == 64 for d in sums.values())
    assert fetch.CRACKFOREST_COMMIT.startswith("ed57c2d") and len(fetch.CRACKFOREST_COMMIT) == 40
    assert fetch.CRACKFOREST_URL.endswith(fetch.CRACKFOREST_COMMIT)


def test_pinned_list_is_the_shared_one(shared_data):
    assert fetch.CRACKFOREST_SUMS.read_bytes() == (shared_data / "crackforest.SHA256SUMS").read_bytes()


def test_read_sums_rejects_escaping_and_malformed_lines(tmp_path):
    bad = tmp_path / "bad.SHA256SUMS"
    bad.write_text(f"{'0' * 64}  ../outside.jpg\n")
    with pytest.raises(FetchError, match=r"bad.SHA256SUMS:1: .*must be relative"):
        fetch.read_sums(bad)
    bad.write_text("nothex  ./a.jpg\n")
    with pytest.raises(FetchError, match=r"bad.SHA256SUMS:1: not a"):
        fetch.read_sums(bad)
    bad.write_text(f"{'0' * 64}  a.jpg\n{'1' * 64}  ./a.jpg\n")
    with pytest.raises(FetchError, match=r"bad.SHA256SUMS:2: a.jpg is listed twice"):
        fetch.read_sums(bad)
    bad.write_bytes(b"\xff\xfe  a.jpg\n")
    with pytest.raises(FetchError, match=r"bad.SHA256SUMS: cannot read the sha256 list"):
        fetch.read_sums(bad)


# --- success paths ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_zip, _targz], ids=["zip", "tar.gz"])
def test_fetch_from_archive(tmp_path, make):
    archive = make(tmp_path / ("cf.zip" if make is _zip else "cf.tar.gz"))
    dest = tmp_path / "data" / "crackforest"
    result = fetch.fetch_crackforest(dest, archive, sums=_sums())
    assert result.status == "fetched" and result.dest == dest and result.n_files == len(FILES)
    for name, content in FILES.items():
        assert (dest / name).read_bytes() == content
    assert not (dest / "extra").exists()  # files outside the pinned list are not copied
    assert _leftovers(dest.parent) == []
    again = fetch.fetch_crackforest(dest, archive, sums=_sums())
    assert again.status == "present"
    assert "already a verified CrackForest copy" in fetch.fetch_report(again)
    forced = fetch.fetch_crackforest(dest, archive, sums=_sums(), force=True)
    assert forced.status == "fetched" and _leftovers(dest.parent) == []


def test_fetch_from_extracted_folder_top_or_nested(tmp_path):
    flat = _tree(tmp_path / "flat")
    nested = _tree(tmp_path / "nested" / TOP)
    for source, dest in ((flat, tmp_path / "a"), (nested.parent, tmp_path / "b")):
        assert fetch.fetch_crackforest(dest, source, sums=_sums()).status == "fetched"
        assert (dest / "image" / "002.jpg").read_bytes() == FILES["image/002.jpg"]
    assert (flat / "image" / "001.jpg").exists()  # the source folder is left as it was


def test_fetch_download_path_with_a_fake_download(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "upstream.zip")
    seen = []

    def fake_download(url, path, timeout):
        seen.append((url, timeout))
        shutil.copyfile(archive, path)

    monkeypatch.setattr(fetch, "download", fake_download)
    result = fetch.fetch_crackforest(tmp_path / "cf", sums=_sums(), timeout=7)
    assert result.status == "fetched" and result.source == fetch.CRACKFOREST_URL
    assert seen == [(fetch.CRACKFOREST_URL, 7)]


def test_cli_fetch_prints_licence_and_profile_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "CRACKFOREST_SUMS", _write_sums(tmp_path / "small.SHA256SUMS"))
    archive = _zip(tmp_path / "cf.zip")
    dest = tmp_path / "cf"
    assert cli.main(["data", "fetch", "crackforest", str(dest), "--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert f"into {dest}: {len(FILES)} files verified" in out
    assert "non-commercial research" in out and "Shi" in out and "2016" in out and "Cui" in out and "2015" in out
    assert f"data: {{source: crackforest, crackforest_dir: {dest}}}" in out
    assert cli.main(["data", "fetch", "crackforest", str(dest), "--archive", str(archive)]) == 0
    assert "already a verified CrackForest copy" in capsys.readouterr().out


# --- verification failures -----------------------------------------------------------------


@pytest.mark.parametrize("make", [_zip, _targz, _tree], ids=["zip", "tar.gz", "folder"])
def test_tampered_file_is_named(tmp_path, make):
    tampered = {**FILES, "groundTruth/001.mat": b"MATLAB 5.0 altered label"}
    source = make(tmp_path / "src", tampered) if make is _tree else make(tmp_path / "src.arc", tampered)
    dest = tmp_path / "out" / "cf"
    with pytest.raises(FetchError, match=r"1 of 5 files fail verification.*groundTruth/001\.mat: sha256 mismatch"):
        fetch.fetch_crackforest(dest, source, sums=_sums())
    assert not dest.exists() and not (tmp_path / "out").exists()  # nothing left behind


def test_missing_file_is_named(tmp_path):
    files = {k: v for k, v in FILES.items() if k != "image/002.jpg"}
    archive = _zip(tmp_path / "cf.zip", files)
    with pytest.raises(FetchError, match=r"image/002\.jpg: missing"):
        fetch.fetch_crackforest(tmp_path / "cf", archive, sums=_sums())
    assert not (tmp_path / "cf").exists() and _leftovers(tmp_path) == []


def test_failed_fetch_keeps_the_previous_copy(tmp_path):
    dest = tmp_path / "cf"
    fetch.fetch_crackforest(dest, _tree(tmp_path / "good"), sums=_sums())
    bad = _tree(tmp_path / "bad", {**FILES, "README.md": b"changed"})
    with pytest.raises(FetchError, match="README.md: sha256 mismatch"):
        fetch.fetch_crackforest(dest, bad, sums=_sums(), force=True)
    assert fetch.verify_tree(dest, _sums()) == [] and _leftovers(tmp_path) == []


def test_existing_invalid_dest_needs_force(tmp_path):
    dest = _tree(tmp_path / "cf", {**FILES, "image/001.jpg": b"corrupt"})
    source = _tree(tmp_path / "good")
    with pytest.raises(FetchError, match=r"exists but is not a verified copy.*image/001\.jpg.*--force"):
        fetch.fetch_crackforest(dest, source, sums=_sums())
    assert fetch.fetch_crackforest(dest, source, sums=_sums(), force=True).status == "fetched"
    assert fetch.verify_tree(dest, _sums()) == []


def test_force_never_replaces_an_unrelated_folder(tmp_path):
    home = tmp_path / "home"
    (home / "thesis").mkdir(parents=True)
    (home / "thesis" / "draft.tex").write_text("precious")
    with pytest.raises(FetchError, match="not a CrackForest copy.*even with --force"):
        fetch.fetch_crackforest(home, _tree(tmp_path / "good"), sums=_sums(), force=True)
    assert (home / "thesis" / "draft.tex").read_text() == "precious"


def test_empty_dest_is_filled(tmp_path):
    dest = tmp_path / "cf"
    dest.mkdir()
    assert fetch.fetch_crackforest(dest, _tree(tmp_path / "good"), sums=_sums()).status == "fetched"


# --- unsafe archives -------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["../evil.txt", f"{TOP}/../../evil.txt", "/tmp/evil.txt", "C:\\evil.txt"])
def test_zip_member_escaping_dest_is_refused(tmp_path, member):
    archive = _zip(tmp_path / "cf.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(member, b"owned")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(FetchError, match=r"escapes the destination folder; refusing to extract"):
        fetch.fetch_crackforest(work / "deep" / "cf", archive, sums=_sums())
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()
    assert list(work.iterdir()) == []


def test_tar_member_escaping_dest_is_refused(tmp_path):
    archive = tmp_path / "cf.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"owned"))
    with pytest.raises(FetchError, match=r"'\.\./\.\./evil\.txt' escapes the destination"):
        fetch.fetch_crackforest(tmp_path / "a" / "cf", archive, sums=_sums())
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a").exists()


def test_tar_link_member_is_refused(tmp_path):
    archive = _targz(tmp_path / "cf.tar.gz")
    with tarfile.open(archive, "r:gz") as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(archive, "w:gz") as tf:
        for m, content in members:
            tf.addfile(m, io.BytesIO(content))
        link = tarfile.TarInfo(f"{TOP}/image/003.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(FetchError, match=r"image/003\.jpg' is a link; refusing"):
        fetch.fetch_crackforest(tmp_path / "cf", archive, sums=_sums())


def test_not_an_archive(tmp_path):
    junk = tmp_path / "cf.zip"
    junk.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(FetchError, match=r"cf\.zip: not a \.zip or \.tar"):
        fetch.fetch_crackforest(tmp_path / "cf", junk, sums=_sums())
    with pytest.raises(FetchError, match="no CrackForest folder"):
        fetch.fetch_crackforest(tmp_path / "cf", _zip(tmp_path / "other.zip", {"docs/a.txt": b"x"}), sums=_sums())
    with pytest.raises(FetchError, match="not found"):
        fetch.fetch_crackforest(tmp_path / "cf", tmp_path / "nowhere.zip", sums=_sums())


# --- offline -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, reason",
    [(urllib.error.URLError("no route to host"), "no route to host"), (TimeoutError("timed out"), "timed out"),
     (OSError("network is unreachable"), "network is unreachable")],
)
def test_offline_gives_one_clear_line_and_rc_2(tmp_path, monkeypatch, capsys, error, reason):
    def offline(url, path, timeout):
        raise error

    monkeypatch.setattr(fetch, "download", offline)
    dest = tmp_path / "new" / "cf"
    assert cli.main(["data", "fetch", "crackforest", str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"linas: error: cannot download {fetch.CRACKFOREST_URL}: {reason}; "
                       "download it elsewhere and pass --archive")
    assert not (tmp_path / "new").exists()  # the parent it created is removed again


def test_cli_rejects_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", "fetch", "imagenet", "x"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


# --- real files (../shared/data) ------------------------------------------------------------


def test_real_files_verify_against_the_pinned_list(tmp_path, shared_data):
    real = shared_data / "crackforest"
    names = ["README.md", "image/001.jpg", "image/002.jpg", "groundTruth/001.mat", "groundTruth/002.mat"]
    pinned = fetch.pinned_sums()
    archive = _zip(tmp_path / "cf.zip", {n: (real / n).read_bytes() for n in names})
    dest = tmp_path / "cf"
    result = fetch.fetch_crackforest(dest, archive, sums={n: pinned[n] for n in names})
    assert result.status == "fetched"
    from linas_lib.data import load_crackforest

    ds = load_crackforest(dest, 64)
    assert ds.names == ("001", "002") and ds.masks.sum() > 0


def test_shared_copy_passes_the_full_pinned_list(tmp_path, shared_data):
    result = fetch.fetch_crackforest(tmp_path / "cf", shared_data / "crackforest")
    assert result.status == "fetched" and result.n_files == 392
    assert sorted(p.name for p in (tmp_path / "cf").iterdir()) == ["README.md", "groundTruth", "image", "seg"]
