"""The on-disk feature cache: encoder taps computed once per (dataset, resolution, weights).

The encoder is frozen (C1), so its taps ``(x1, x2, x3, x4, deep)`` of every image never
change; they are computed once, stored as float16 (half the bytes; the decoders compute in
float32) under ``cache_dir("features")`` in a file named by a hash of the split's content,
the resolution and the encoder weights' id, and reused by supernet training, standalone
training and every evaluation. A file that is unreadable or does not match its key or the
expected shapes is rebuilt (and the rebuild logged with the file name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import SPLIT_NAMES, dataset_digest, load_splits, preprocess
from ..keys import atomic_torch_save, content_hash, load_checkpoint
from ..paths import cache_dir
from .model import TAP_CHANNELS, TAP_STRIDES
from .pretrain import pretrain_identity
from .weights import EncoderWeights, imagenet_identity

log = logging.getLogger(__name__)
Taps = tuple[torch.Tensor, ...]
FEATURE_DTYPE = torch.float16


@dataclass(frozen=True)
class FeatureSplit:
    """Cached taps and masks of one split.

    Attributes:
        taps: five float16 tensors ``(N, C_i, H/s_i, W/s_i)``.
        masks: uint8 ``(N, H, W)``.
        names: image names.
    """

    taps: Taps
    masks: torch.Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def batch(self, idx) -> tuple[Taps, torch.Tensor]:
        """Float32 taps and int64 masks of the images at ``idx``."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long, device=self.masks.device)
        return tuple(t[idx].float() for t in self.taps), self.masks[idx].long()

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[tuple[Taps, torch.Tensor]]:
        """All images in batches; shuffled by ``rng`` when given, in order otherwise."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for lo in range(0, len(order), batch_size):
            yield self.batch(order[lo: lo + batch_size])

    def subset(self, n: int) -> FeatureSplit:
        """The first ``n`` images (all when ``n`` is 0 or larger than the split)."""
        if n <= 0 or n >= len(self):
            return self
        return FeatureSplit(tuple(t[:n] for t in self.taps), self.masks[:n], self.names[:n])

    def to(self, device) -> FeatureSplit:
        """The split with taps and masks on ``device`` (batches then come from there)."""
        if self.masks.device == torch.device(device):
            return self
        return FeatureSplit(tuple(t.to(device) for t in self.taps), self.masks.to(device), self.names)


@dataclass(frozen=True)
class Features:
    """The cached features of a run's three splits and the weights they come from."""

    splits: dict[str, FeatureSplit]
    weights: EncoderWeights
    cache_hits: dict[str, bool]

    def to(self, device) -> Features:
        """All splits on ``device``."""
        return Features({k: v.to(device) for k, v in self.splits.items()}, self.weights, self.cache_hits)

    def __getitem__(self, split: str) -> FeatureSplit:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; expected one of {', '.join(self.splits)}")
        return self.splits[split]


def compute_taps(encoder: torch.nn.Module, images: np.ndarray, batch_size: int) -> Taps:
    """Run the frozen encoder over uint8 images ``(N, H, W, 3)``; float16 taps."""
    parts: list[list[torch.Tensor]] = [[] for _ in TAP_CHANNELS]
    encoder.eval()
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            for i, tap in enumerate(encoder(preprocess(images[lo: lo + batch_size]))):
                parts[i].append(tap.to(FEATURE_DTYPE))
    return tuple(torch.cat(p) for p in parts)


def feature_key(ds, weights_id: str) -> str:
    """Cache key of one split's taps: content hash, resolution, encoder weights id."""
    return content_hash({"data": dataset_digest(ds), "resolution": int(ds.images.shape[1]), "weights": weights_id,
                        "dtype": str(FEATURE_DTYPE)})


def _valid(state, key: str, ds) -> bool:
    """Whether a loaded cache file is this split's taps (key, count, shapes)."""
    if not isinstance(state, dict) or state.get("key") != key or len(state.get("taps", ())) != len(TAP_CHANNELS):
        return False
    side = int(ds.images.shape[1])
    for tap, ch, stride in zip(state["taps"], TAP_CHANNELS, TAP_STRIDES):
        if tuple(tap.shape) != (len(ds), ch, side // stride, side // stride):
            return False
    return tuple(state["masks"].shape) == tuple(ds.masks.shape)


def load_or_build(ds, weights_id: str, encoder_fn: Callable[[], torch.nn.Module], batch_size: int,
                  folder: Path | None = None) -> tuple[FeatureSplit, bool]:
    """The cached taps of one split, computing and saving them on a miss.

    Args:
        ds: a :class:`~linas_lib.data.SegDataset`.
        weights_id: id of the encoder weights (part of the key).
        encoder_fn: returns the frozen encoder; called only on a miss.
        batch_size: encoder batch size.
        folder: cache folder (default ``cache_dir("features")``).

    Returns:
        ``(features, hit)``.
    """
    key = feature_key(ds, weights_id)
    path = (folder or cache_dir("features")) / f"taps_{key}.pt"
    state = load_checkpoint(path, key, "feature cache", weights_only=True)
    if state is not None:
        if _valid(state, key, ds):
            return FeatureSplit(tuple(state["taps"]), state["masks"], tuple(ds.names)), True
        log.warning("feature cache %s does not match its shapes; rebuilding it", path)
    taps = compute_taps(encoder_fn(), ds.images, batch_size)
    masks = torch.from_numpy(np.ascontiguousarray(ds.masks))
    atomic_torch_save({"key": key, "taps": list(taps), "masks": masks}, path)
    return FeatureSplit(taps, masks, tuple(ds.names)), False


def encoder_identity(profile, seed: int, splits: dict) -> EncoderWeights:
    """Which weights the run's encoder has, without loading or training it."""
    return imagenet_identity(profile.encoder.weights) or pretrain_identity(profile, seed, splits["train"])


_MEMO: dict[tuple, Features] = {}


def run_features(profile, seed: int, splits: dict | None = None) -> Features:
    """Cached taps of the run's train/val/test splits (encoder loaded or pre-trained on a miss).

    Memoised per process, so notebook cells share one copy.
    """
    splits = splits or load_splits(profile, seed)
    weights = encoder_identity(profile, seed, splits)
    memo_key = (weights.weights_id, *(dataset_digest(splits[s]) for s in SPLIT_NAMES))
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    encoder = []

    def encoder_fn():
        if not encoder:
            from . import frozen_encoder

            encoder.append(frozen_encoder(profile, seed, splits)[0])
        return encoder[0]

    out, hits = {}, {}
    for name in SPLIT_NAMES:
        out[name], hits[name] = load_or_build(splits[name], weights.weights_id, encoder_fn, profile.encoder.batch_size)
    _MEMO[memo_key] = Features(out, weights, hits)
    return _MEMO[memo_key]


def cached_features(profile, seed: int, split: str) -> FeatureSplit:
    """Cached taps and masks of one split (``train``, ``val`` or ``test``)."""
    return run_features(profile, seed)[split]
