"""Task pre-training of the encoder when no ImageNet weights are at hand (C1 fallback).

The DenseNet121 encoder (initialised from the run's generator) and a fixed reference
decoder (every layer ``DWSep3x3`` at width 100) are trained together on the train split
with the segmentation loss for ``encoder.pretrain_epochs`` epochs (Adam,
``encoder.pretrain_lr``, batches of ``encoder.batch_size``, order shuffled per epoch from
the run's generator). The encoder is saved under ``cache_dir("encoder")``, keyed by a hash
of the train split's content, the resolution, these settings and the seed; a checkpoint is
written after every epoch, so a stopped run resumes where it stopped. The reference
decoder is discarded: only the encoder is kept, and frozen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data import dataset_digest, load_splits, preprocess
from ..keys import atomic_torch_save, content_hash, load_checkpoint, rng_for, seeded_module
from ..losses import check_finite, segmentation_terms
from ..ops import Decoder
from ..paths import cache_dir
from ..space import N_LAYERS, choice_index
from .model import DenseNetEncoder, freeze
from .weights import EncoderWeights

log = logging.getLogger(__name__)
PRETRAIN_STREAM = 0xE9C0
REFERENCE_CHOICES = (choice_index("DWSep3x3", 100),) * N_LAYERS


def pretrain_identity(profile, seed: int, train) -> EncoderWeights:
    """The :class:`EncoderWeights` the task pre-training of this run produces (not trained yet)."""
    cfg = profile.encoder
    key = content_hash({
        "train": dataset_digest(train), "resolution": int(train.images.shape[1]), "epochs": cfg.pretrain_epochs,
        "lr": cfg.pretrain_lr, "batch_size": cfg.batch_size, "seed": seed, "decoder": list(REFERENCE_CHOICES),
    })
    path = cache_dir("encoder") / f"densenet121_task_{key}.pt"
    return EncoderWeights("task-pretrained", str(path), key, cfg.pretrain_epochs)


def task_pretrained_encoder(profile, seed: int, splits: dict | None = None) -> tuple[DenseNetEncoder, EncoderWeights]:
    """The task pre-trained encoder of a run: loaded from the cache, else trained and saved.

    Args:
        profile: the run's profile (``encoder`` section).
        seed: run seed.
        splits: data splits (loaded from the profile when None).

    Returns:
        ``(encoder, weights)``, the encoder frozen.
    """
    splits = splits or load_splits(profile, seed)
    weights = pretrain_identity(profile, seed, splits["train"])
    path = Path(weights.path)
    state = load_checkpoint(path, weights.weights_id, "encoder checkpoint")
    if state is None or not state["done"]:
        state = _pretrain(profile, seed, splits["train"], path, weights.weights_id, state)
    encoder = DenseNetEncoder()
    encoder.load_state_dict(state["encoder"])
    return freeze(encoder), weights


def _pretrain(profile, seed: int, train, path: Path, key: str, resume: dict | None) -> dict:
    """Train encoder + reference decoder, checkpointing after every epoch."""
    cfg = profile.encoder
    gen = torch.Generator().manual_seed(int(rng_for(seed, PRETRAIN_STREAM).integers(2**62)))
    encoder = seeded_module(DenseNetEncoder, gen)
    decoder = seeded_module(lambda: Decoder(REFERENCE_CHOICES), gen)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.pretrain_lr)
    rng = rng_for(seed, PRETRAIN_STREAM + 1)
    start = 0
    if resume is not None:
        encoder.load_state_dict(resume["encoder"])
        decoder.load_state_dict(resume["decoder"])
        optimizer.load_state_dict(resume["optimizer"])
        rng.bit_generator.state = resume["rng"]
        start = resume["epoch"]
    encoder.train()
    decoder.train()
    state = {"key": key, "epoch": start, "done": start >= cfg.pretrain_epochs, "encoder": encoder.state_dict()}
    for epoch in range(start, cfg.pretrain_epochs):
        order = rng.permutation(len(train))
        for step, lo in enumerate(range(0, len(order), cfg.batch_size)):
            idx = order[lo: lo + cfg.batch_size]
            logits = decoder(encoder(preprocess(train.images[idx])))
            terms = segmentation_terms(logits, torch.from_numpy(train.masks[idx]))
            check_finite(terms, f"encoder pre-training epoch {epoch} step {step}")
            optimizer.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            optimizer.step()
        state = {
            "key": key, "epoch": epoch + 1, "done": epoch + 1 == cfg.pretrain_epochs, "encoder": encoder.state_dict(),
            "decoder": decoder.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
        }
        atomic_torch_save(state, path)
        log.info("encoder pre-training epoch %d/%d done", epoch + 1, cfg.pretrain_epochs)
    return state
