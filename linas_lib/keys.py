"""Content keys, seed streams, atomic writes and checkpoint I/O: each defined once here.

* **Content keys** (:func:`content_hash`): sha256 over a canonical JSON rendering of the
  data, where numpy arrays and torch tensors enter by dtype, shape and raw bytes and
  dataclasses by all their fields. Nothing uses Python's salted ``hash()``, so two
  processes (or two machines) compute the same key for the same content.
  :func:`key_fields` picks the fields of a config dataclass that enter a key: all but those
  declared with ``metadata={"key": False}``.
* **Seed streams** (:func:`rng_for`, :func:`torch_generator`, :func:`seeded_module`): every
  random draw comes from a generator derived from ``(seed, stream)``; no global state.
* **Atomic writes** (:func:`atomic_write_text`, :func:`atomic_write_bytes`,
  :func:`atomic_torch_save`): temporary file in the same folder, then a rename, so a crash
  never leaves half a file.
* **Checkpoints** (:func:`load_checkpoint`): a ``torch.save`` dict carrying a ``key``; a file
  that is unreadable or belongs to another configuration is logged and ignored.

Imports torch lazily: the measuring core and the CLI use this module where only torch (and
not even that, for a text write) is installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
KEY_LENGTH = 16


# ------------------------------------------------------------------ content keys


def _canonical(obj):
    """A JSON-able rendering of ``obj`` in which every value is spelled one way."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dataclass__": type(obj).__name__,
                **{f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__array__": str(obj.dtype), "shape": list(obj.shape), "sha256": bytes_digest(
            np.ascontiguousarray(obj).tobytes())}
    if type(obj).__module__ == "torch" and type(obj).__name__ in ("Tensor", "Parameter"):
        return _canonical(obj.detach().cpu().numpy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"content_hash: cannot hash a {type(obj).__name__} ({obj!r:.60}); pass plain data")


def canonical_json(obj) -> str:
    """Canonical JSON of ``obj`` (sorted keys, arrays by their bytes' sha256)."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def content_hash(obj, length: int = KEY_LENGTH) -> str:
    """Short sha256 of ``obj``'s canonical JSON: the key of a cached artifact.

    Args:
        obj: plain data (dicts, lists, numbers, strings), dataclasses, numpy arrays or torch
            tensors, nested in any way.
        length: hex characters kept.

    Raises:
        TypeError: a value with no canonical spelling (an object, a function).
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def key_fields(cfg) -> dict:
    """The fields of a config dataclass that enter a content key, by name.

    Every field counts except those declared ``field(default=..., metadata={"key": False})``
    (a setting that does not affect the cached artifact). So a field added later enters the
    key by default, and leaving one out is a decision written next to the field itself. A
    field declared ``metadata={"key": "unless_default"}`` counts only when it differs from its
    default: for a switch added later whose default reproduces the earlier computation
    exactly, so artifacts cached before it existed keep their keys. A field declared
    ``metadata={"key": "explicit"}`` is left out here because the function that builds the
    key names it itself, in a form of its own (``supernet.calr_search``: see
    :func:`linas_lib.supernet.train.supernet_key`).
    Nested dataclass values (also inside lists, tuples and dicts) are reduced the same way.

    Args:
        cfg: a dataclass instance.

    Raises:
        TypeError: ``cfg`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"key_fields: expected a dataclass instance, got {type(cfg).__name__}")
    return {f.name: _key_value(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if _counts(f, cfg)}


def _counts(f: dataclasses.Field, cfg) -> bool:
    """Whether field ``f`` of ``cfg`` enters the key (see :func:`key_fields`)."""
    rule = f.metadata.get("key", True)
    if rule == "unless_default":
        return getattr(cfg, f.name) != f.default
    if rule == "explicit":
        return False
    return bool(rule)


def _key_value(value):
    """``value`` with every nested dataclass reduced to its :func:`key_fields`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return key_fields(value)
    if isinstance(value, (list, tuple)):
        return [_key_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _key_value(v) for k, v in value.items()}
    return value


def bytes_digest(data: bytes, length: int = 64) -> str:
    """sha256 hex digest of raw bytes."""
    return hashlib.sha256(data).hexdigest()[:length]


def file_digest(path: str | Path, length: int = KEY_LENGTH) -> str:
    """Short sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


# ------------------------------------------------------------------ seed streams


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator for one named stream of a seed."""
    return np.random.default_rng([int(seed), int(stream)])


def torch_generator(rng: np.random.Generator):
    """A CPU ``torch.Generator`` seeded by one draw of ``rng``."""
    import torch

    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def seeded_module(factory, generator):
    """Build a module whose random initialisation is drawn from ``generator``.

    torch's init functions read the global generator, so the module is built inside
    :func:`torch.random.fork_rng` seeded from ``generator``; the global state is restored.
    """
    import torch

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


# ------------------------------------------------------------------ atomic writes


class WriteError(OSError):
    """A result or cache file could not be written; the message names it and the free disk space."""


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``.

    Raises:
        WriteError: the write or the rename failed with an I/O error (a full disk shows in torch
            only as "basic_ios::clear: iostream error"); the message names ``path`` and the free
            space of its disk. The temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"could not write {path}: {err}; {_free_space(path.parent)}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _free_space(folder: Path) -> str:
    """``"<n> GB free on its disk"``, with a hint when that is little (a cache folder can move)."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free / 1e9
    except OSError:
        return "free space unknown"
    hint = " (full? free space, or set LINAS_CACHE_DIR to a larger disk for the cache)" if free < 2 else ""
    return f"{free:.2f} GB free on its disk{hint}"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: str | Path, data, indent: int | None = None) -> Path:
    """``json.dumps(data)`` written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent) + ("\n" if indent is not None else ""))


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary name in the same folder, then rename."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ------------------------------------------------------------------ checkpoints


def load_checkpoint(path: str | Path | None, key: str, what: str, weights_only: bool = False) -> dict | None:
    """A ``torch.save`` dict whose ``"key"`` is ``key``, else None.

    Missing files return None silently; unreadable files and files of another configuration
    are logged (naming ``what`` and the path) and ignored, so the caller rebuilds.

    Args:
        path: checkpoint file (None: no checkpoint).
        key: the content key the file must carry.
        what: a few words for the log ("supernet checkpoint").
        weights_only: passed to ``torch.load``.
    """
    if path is None or not Path(path).is_file():
        return None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        log.warning("%s %s unreadable (%s); rebuilding it", what, path, err)
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        log.warning("%s %s belongs to another configuration; rebuilding it", what, path)
        return None
    return state


def load_json(path: str | Path, default=None):
    """A JSON file's content, or ``default`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


def load_cache_json(path: str | Path, what: str, valid) -> dict | list | None:
    """A cache file's JSON content, or None (the caller rebuilds) when it is missing or unusable.

    A cache is only ever a shortcut, so an unreadable file or one of the wrong shape is logged
    (naming ``what`` and the path, like :func:`load_checkpoint`) and ignored, never raised
    deep in the code that reads it.

    Args:
        path: the cache file.
        what: a few words for the log ("search run checkpoint").
        valid: ``content -> str``: why the content is unusable, "" when it is usable.
    """
    try:
        content = load_json(path)
    except (ValueError, OSError) as err:
        log.warning("%s unreadable (%s); rebuilding it", what, err)
        return None
    if content is None:
        return None
    problem = valid(content)
    if problem:
        log.warning("%s %s unusable (%s); rebuilding it", what, path, problem)
        return None
    return content
