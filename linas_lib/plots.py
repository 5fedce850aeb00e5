"""Figures of the paper: one self-contained function per figure kind, returning a Figure."""

from __future__ import annotations

import numpy as np


def sample_grid(dataset, n: int, rng: np.random.Generator):
    """Image / mask-overlay pairs of ``n`` random images of a :class:`~linas_lib.data.SegDataset`.

    Each pair is a column: the image on top, the image with its defect mask in red below,
    titled with the image name and its defect pixel share.

    Args:
        dataset: the dataset to show.
        n: number of images (fewer if the dataset is smaller).
        rng: chooses the images.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = max(1, min(n, len(dataset)))
    idx = np.sort(rng.choice(len(dataset), size=n, replace=False))
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, i in enumerate(idx):
        top, bottom = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        image, mask = dataset.images[i], dataset.masks[i].astype(bool)
        overlay = image.copy()
        overlay[mask] = (0.4 * overlay[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        top.imshow(image)
        top.set_title(f"{dataset.names[i]}\n{100 * mask.mean():.1f}% defect", fontsize=7)
        bottom.imshow(overlay)
    fig.suptitle(f"{dataset.source}: image / defect mask (red)", fontsize=9)
    fig.tight_layout()
    return fig
