"""Segmentation datasets: the synthetic default, CrackForest, any images/masks folder.

Every dataset is a :class:`SegDataset` of uint8 RGB images ``(N, H, W, 3)`` and binary
masks ``(N, H, W)`` (1 = defect) at a square ``resolution``. :func:`load_splits` is the one
call later notebooks use: it picks the dataset named by the profile and splits it
train/val/test, deterministically from the seed. :func:`preprocess` and
:func:`postprocess` are the pre- and post-processing stages of the deployed model (the
latency code times them end to end).

Real images are resized with PIL: images bilinear; masks with a BOX filter followed by
``> 0``, i.e. a low-resolution pixel is a defect when any part of its footprint is, so
one-pixel cracks survive downsampling (crack share grows accordingly). Non-square images
(CrackForest is 480x320) follow ``data.aspect``: ``resize`` stretches them to the square
(the default; a one-line notice says so), ``letterbox`` first pads them with zeros to a
centred square (masks padded with background 0), keeping their aspect ratio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import ASPECTS, DataConfig, Profile
from .keys import content_hash
from .paths import resolve

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_IMAGE_SIDE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Random streams of load_splits: default_rng([seed, stream]).
DATA_STREAM = 0xDA7A
SPLIT_STREAM = 0x5B17
SPLIT_NAMES = ("train", "val", "test")

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A dataset is missing or malformed; the message names the file/folder and the problem."""


@dataclass(frozen=True)
class SegDataset:
    """Images and binary defect masks of one dataset.

    Attributes:
        images: uint8 ``(N, H, W, 3)``, ``H == W == resolution``.
        masks: uint8 ``(N, H, W)`` with values in {0, 1} (1 = defect).
        names: one name per image (file stem, or ``synth_NNNN``).
        source: ``"synthetic"``, ``"crackforest"`` or ``"folder:<path>"``.
    """

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx) -> SegDataset:
        """The images at ``idx`` (indices or a boolean mask), in that order."""
        idx = np.asarray(idx)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)
        return SegDataset(self.images[idx], self.masks[idx], tuple(self.names[i] for i in idx), self.source)

    @property
    def resolution(self) -> int:
        """Side of the square images."""
        return int(self.images.shape[1])


def dataset_digest(ds: SegDataset) -> str:
    """Content key of a dataset: its images, masks and names (never its source path)."""
    return content_hash({"images": ds.images, "masks": ds.masks, "names": list(ds.names)})


# ---------------------------------------------------------------------------------------
# Synthetic industrial surfaces with cracks, scratches and spots
# ---------------------------------------------------------------------------------------


def synthetic_dataset(
    n_images: int,
    resolution: int,
    rng: np.random.Generator,
    defects_per_image: tuple[int, int] = (1, 3),
    defect_free_share: float = 0.1,
) -> SegDataset:
    """Generate textured industrial surfaces with defects and their binary masks.

    Surfaces are brushed metal (noise streaked along one direction), grain (smoothed
    noise) or woven fabric (crossed sinusoids), each under low-frequency shading and a
    slight colour tint. Defects are cracks (thin branching random walks), scratches
    (long thin, slightly curved lines) and spots (irregular blobs), each darker or
    brighter than the surface. About ``defect_free_share`` of the images have none.

    Args:
        n_images: number of images.
        resolution: side of the square images in pixels.
        rng: the only source of randomness (same state, same dataset).
        defects_per_image: inclusive range of the number of defects of a defective image.
        defect_free_share: probability that an image has no defect.

    Returns:
        The dataset, ``source="synthetic"``.

    Raises:
        DataError: a non-positive size or an invalid range/share.
    """
    lo, hi = defects_per_image
    if n_images < 1 or resolution < 8:
        raise DataError(f"synthetic dataset: need n_images >= 1 and resolution >= 8, got {n_images}, {resolution}")
    if not 0 <= lo <= hi:
        raise DataError(f"synthetic dataset: defects_per_image must be 0 <= lo <= hi, got {defects_per_image}")
    if not 0.0 <= defect_free_share <= 1.0:
        raise DataError(f"synthetic dataset: defect_free_share must be in [0, 1], got {defect_free_share}")
    surface = _surfaces(n_images, resolution, rng)
    n_defects = rng.integers(lo, hi + 1, size=n_images)
    n_defects[rng.random(n_images) < defect_free_share] = 0
    masks, contrast = _defects(n_defects, resolution, rng)
    shade = _blur(contrast, 0.6)  # soft defect edges; the mask stays the hard footprint
    grey = np.clip(surface + shade, 0.0, 1.0)
    tint = (1.0 + rng.normal(0.0, 0.04, size=(n_images, 1, 1, 3))).astype(np.float32)
    rgb = grey[..., None] * tint + 0.01 * rng.standard_normal(size=(*grey.shape, 3), dtype=np.float32)
    images = (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    names = tuple(f"synth_{i:04d}" for i in range(n_images))
    return SegDataset(images, masks, names, "synthetic")


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a batch ``(N, H, W)`` over the image axes."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, sigma, sigma), mode="reflect")


def _surfaces(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey surfaces in [0, 1], ``(n, size, size)`` float32: metal, grain or fabric."""
    from scipy.ndimage import uniform_filter1d

    kind = rng.integers(0, 3, size=n)
    noise = rng.standard_normal(size=(n, size, size), dtype=np.float32)
    f32 = np.float32
    # brushed metal: streaks along x or y
    streak = uniform_filter1d(noise, size=max(3, size // 6), axis=2, mode="wrap")
    streak = np.where(rng.random(n)[:, None, None] < 0.5, streak, streak.transpose(0, 2, 1))
    metal = f32(0.12 / streak.std()) * streak + f32(0.02) * noise
    # grain: smoothed noise
    grain = _blur(noise, 1.2)
    grain = f32(0.06 / grain.std()) * grain
    # fabric: crossed sinusoids, slightly rotated, with thread noise
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(-0.3, 0.3, size=(n, 1, 1)).astype(f32)
    period = rng.uniform(4.0, 9.0, size=(n, 1, 1)).astype(f32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2, 1, 1)).astype(f32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    weave = np.sin(f32(2 * np.pi) * u / period + phase[:, 0]) * np.sin(f32(2 * np.pi) * v / period + phase[:, 1])
    fabric = f32(0.07) * weave + f32(0.5) * grain
    texture = np.choose(kind[:, None, None], [metal, grain, fabric])
    # low-frequency shading: upsampled coarse noise plus a linear gradient
    coarse = rng.normal(0.0, 1.0, size=(n, 4, 4))
    spread = np.exp(-(((np.arange(size) + 0.5) * 4 / size - 0.5 - np.arange(4)[:, None]) ** 2) / 0.7).T
    blotch = (spread @ coarse @ spread.T).astype(f32)  # smooth upsampling of the 4x4 grid
    gdir = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(f32)
    gradient = (np.cos(gdir) * xx + np.sin(gdir) * yy) / f32(size) - f32(0.5)
    base = rng.uniform(0.3, 0.7, size=(n, 1, 1)).astype(f32)
    slope = rng.uniform(0.0, 0.15, size=(n, 1, 1)).astype(f32)
    surface = base + f32(0.05) * blotch + slope * gradient + texture
    return np.clip(surface, 0.02, 0.98).astype(np.float32)


def _defects(n_defects: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(n, size, size)`` uint8 and contrast maps (float32) of the drawn defects."""
    n = len(n_defects)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    contrast = np.zeros((n, size, size), dtype=np.float32)
    scale = size / 128  # lengths and spot radii are tuned for 128 px
    for img in np.repeat(np.arange(n), n_defects):
        kind = rng.choice(3, p=(0.45, 0.3, 0.25))  # crack, scratch, spot
        if kind == 0:
            ys, xs = _crack(size, scale, rng)
        elif kind == 1:
            ys, xs = _scratch(size, scale, rng)
        else:
            ys, xs = _spot(size, scale, rng)
        sign = -1.0 if rng.random() < 0.7 else 1.0  # most defects are darker than the surface
        masks[img, ys, xs] = 1
        contrast[img, ys, xs] = sign * rng.uniform(0.2, 0.45)
    return masks, contrast


def _raster(points: np.ndarray, size: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(ys, xs)`` covered by dense points ``(k, 2)`` drawn ``width`` pixels wide."""
    pix = np.round(points).astype(np.int64)
    offsets = np.array([(0, 0), (0, 1), (1, 0), (1, 1)][: 1 if width <= 1 else 4])
    pix = (pix[:, None, :] + offsets[None]).reshape(-1, 2)
    keep = (pix >= 0).all(axis=1) & (pix < size).all(axis=1)
    pix = pix[keep]
    return pix[:, 0], pix[:, 1]


def _walk(start: np.ndarray, angle: float, steps: int, wiggle: float, rng: np.random.Generator) -> np.ndarray:
    """A random walk of ``steps`` unit steps (half a pixel apart) from ``start``."""
    angles = angle + np.cumsum(rng.normal(0.0, wiggle, size=steps))
    step = 0.5 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return start + np.cumsum(step, axis=0)


def _crack(size: int, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin crack: a wiggly random walk with up to two branches."""
    start = rng.uniform(0.15, 0.85, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    main = _walk(start, angle, int(rng.integers(140, 340) * scale), 0.12, rng)
    parts = [main]
    for _ in range(int(rng.integers(0, 3))):
        root = main[rng.integers(len(main))]
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2)
        parts.append(_walk(root, angle + turn, int(rng.integers(40, 140) * scale), 0.15, rng))
    return _raster(np.concatenate(parts), size, 1 if rng.random() < 0.35 else 2)


def _scratch(size: int, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A scratch: a long, thin, straight or slightly curved line."""
    start = rng.uniform(0.1, 0.9, size=2) * size
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(50, 120) * scale
    t = np.arange(0.0, length, 0.5)[:, None]
    direction = np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([-direction[1], direction[0]])
    bend = rng.uniform(-1.0, 1.0) * 8.0 * scale / max(length, 1.0) ** 2
    points = start + t * direction + bend * (t * (t - length)) * normal
    return _raster(points, size, 1)


def _spot(size: int, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A spot or pit: an irregular, slightly elongated blob."""
    radius = rng.uniform(3.0, 8.0) * scale
    centre = rng.uniform(0.1, 0.9, size=2) * size
    reach = int(np.ceil(radius * 1.6)) + 1
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    theta = np.arctan2(dy, dx)
    stretch = rng.uniform(1.0, 1.6)
    lobes = 1.0 + 0.2 * np.sin(rng.integers(2, 6) * theta + rng.uniform(0, 2 * np.pi))
    inside = (dx / stretch) ** 2 + dy**2 <= (radius * lobes) ** 2
    ys = np.round(centre[0]).astype(np.int64) + dy[inside]
    xs = np.round(centre[1]).astype(np.int64) + dx[inside]
    keep = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    return ys[keep], xs[keep]


# ---------------------------------------------------------------------------------------
# Real data: CrackForest and images/masks folders
# ---------------------------------------------------------------------------------------


CRACKFOREST_CLASSES = (1, 2, 3, 4)  # Segmentation values: background, crack, two rare extras


def load_crackforest(folder, resolution: int, max_images: int = 0, aspect: str = "resize") -> SegDataset:
    """Load the labelled CrackForest images (``image/NNN.jpg`` + ``groundTruth/NNN.mat``).

    The mask is ``Segmentation == 2`` (crack); classes 3/4 count as background. Images
    are resized bilinearly; masks with PIL BOX then ``> 0`` so thin cracks survive.

    Args:
        folder: the CrackForest folder.
        resolution: output side in pixels (images are resized to a square).
        max_images: keep the first ``max_images`` labelled images by name (0 = all).
        aspect: ``resize`` (stretch 480x320 to the square) or ``letterbox`` (pad first).

    Returns:
        The dataset, ``source="crackforest"``, ordered by name.

    Raises:
        DataError: missing folders, no labelled image, an unreadable image or label file, a
            label of another size than its image or with values outside 1-4.
    """
    folder = Path(folder)
    image_dir, label_dir = folder / "image", folder / "groundTruth"
    for path in (folder, image_dir, label_dir):
        if not path.is_dir():
            raise DataError(f"CrackForest folder {path}: not found (expected image/ and groundTruth/)")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() == ".jpg"}
    labelled = sorted(p for p in label_dir.glob("*.mat") if p.stem in images)
    if not labelled:
        raise DataError(f"CrackForest folder {folder}: no image/NNN.jpg has a groundTruth/NNN.mat label")
    if max_images > 0:
        labelled = labelled[:max_images]
    pairs = [_same_size(_read_image(images[p.stem]), images[p.stem], _read_crackforest_label(p), p) for p in labelled]
    return _assemble(pairs, [p.stem for p in labelled], resolution, "crackforest", images_dir=image_dir,
                     aspect=aspect)


def _read_crackforest_label(path: Path) -> np.ndarray:
    """Binary crack mask (uint8 0/1) from a CrackForest ``.mat`` label."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(mat["groundTruth"].Segmentation)
    except (MatReadError, NotImplementedError, OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise DataError(f"{path}: not a CrackForest label (struct groundTruth.Segmentation): {err}") from err
    if segmentation.ndim != 2:
        raise DataError(f"{path}: groundTruth.Segmentation must be 2-D, got shape {segmentation.shape}")
    unexpected = np.setdiff1d(np.unique(segmentation), CRACKFOREST_CLASSES)
    if unexpected.size:
        raise DataError(f"{path}: groundTruth.Segmentation holds {unexpected[:5].tolist()}, outside the classes "
                        f"{list(CRACKFOREST_CLASSES)} (1 background, 2 crack, 3/4 rare extras)")
    return (segmentation == 2).astype(np.uint8)


def _same_size(image: np.ndarray, image_path: Path, mask: np.ndarray, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``(image, mask)`` pair, once their sizes agree.

    Raises:
        DataError: naming the mask file and both sizes.
    """
    if image.shape[:2] != mask.shape:
        raise DataError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match "
                        f"image {image_path.name} size {image.shape[1]}x{image.shape[0]}")
    return image, mask


def load_folder(folder, resolution: int, max_images: int = 0, aspect: str = "resize") -> SegDataset:
    """Load a user dataset: ``images/`` and ``masks/`` with files matched by stem.

    Images may be png/jpg/bmp/tif (grey, RGB or RGBA: converted to RGB). Masks are single
    channel (or RGB with equal channels) with values {0, 1} or {0, 255}; use a lossless
    format (a JPEG mask has artefacts and is rejected).

    Args:
        folder: a folder holding ``images/`` and ``masks/``.
        resolution: output side in pixels (images are resized to a square).
        max_images: keep the first ``max_images`` pairs by name (0 = all).
        aspect: ``resize`` (stretch non-square images) or ``letterbox`` (pad first).

    Returns:
        The dataset, ``source="folder:<folder>"``, ordered by name.

    Raises:
        DataError: naming the file or folder for a missing/empty folder, an image without
            mask or mask without image, duplicate stems, an unreadable file, a size
            mismatch, mask values outside {0, 1}/{0, 255}, or an image under 32 px.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder}: not found")
    image_files = _files_by_stem(folder / "images")
    mask_files = _files_by_stem(folder / "masks")
    if not image_files:
        raise DataError(f"dataset folder {folder / 'images'}: no images ({'/'.join(IMAGE_SUFFIXES)})")
    for stem in sorted(set(image_files) - set(mask_files)):
        raise DataError(f"{image_files[stem]}: image without a mask (no masks/{stem}.*)")
    for stem in sorted(set(mask_files) - set(image_files)):
        raise DataError(f"{mask_files[stem]}: mask without an image (no images/{stem}.*)")
    stems = sorted(image_files)
    if max_images > 0:
        stems = stems[:max_images]
    pairs = []
    for stem in stems:
        pairs.append(_same_size(_read_image(image_files[stem]), image_files[stem],
                                _read_mask(mask_files[stem]), mask_files[stem]))
    return _assemble(pairs, stems, resolution, f"folder:{folder}", images_dir=folder / "images", aspect=aspect)


def _files_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; errors for a missing folder or duplicate stems."""
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder}: not found (a dataset needs images/ and masks/)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"{path}: two files with stem {path.stem!r} ({found[path.stem].name}, {path.name})")
        found[path.stem] = path
    return found


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image file, or raise DataError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image file ({err})") from err


WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes of 16-bit, 32-bit and float images


def _read_image(path: Path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``; errors for unreadable files and images under 32 px."""
    img = _open(path)
    if img.mode in WIDE_MODES:  # convert("RGB") would clip them to 255, silently
        raise DataError(f"{path}: a {img.mode} image (more than 8 bits per channel); save it as 8-bit grey or RGB")
    if min(img.size) < MIN_IMAGE_SIDE:
        raise DataError(f"{path}: image is {img.size[0]}x{img.size[1]} px, smaller than {MIN_IMAGE_SIDE} px")
    return np.asarray(img.convert("RGB"))


def _grey_palette(img) -> bool:
    """Whether every palette colour a palette-mode image uses is a grey (so it reads as those greys)."""
    palette = np.asarray(img.getpalette() or [], dtype=int).reshape(-1, 3)
    used = np.unique(np.asarray(img))
    return bool(len(palette) > used.max() and (palette[used] == palette[used][:, :1]).all())


def _read_mask(path: Path) -> np.ndarray:
    """Binary mask uint8 ``(H, W)`` in {0, 1} from a {0,1} or {0,255} single-channel file."""
    img = _open(path)
    if img.mode == "1" or (img.mode == "P" and _grey_palette(img)):
        img = img.convert("L")  # a grey palette reads by its grey levels; a coloured one by its label indices
    values = np.asarray(img)
    if values.ndim == 3:
        if values.shape[2] == 4:
            values = values[..., :3]
        if not (values == values[..., :1]).all():
            raise DataError(f"{path}: mask must be single channel (RGB allowed only with equal channels)")
        values = values[..., 0]
    present = set(np.unique(values).tolist())
    if not (present <= {0, 1} or present <= {0, 255}):
        shown = sorted(present)[:8]
        raise DataError(f"{path}: mask values must be {{0, 1}} or {{0, 255}}, found {shown}")
    return (values > 0).astype(np.uint8)


def _assemble(pairs, names, resolution: int, source: str, images_dir: Path, aspect: str = "resize") -> SegDataset:
    """Resize ``(image, mask)`` pairs to ``resolution`` and stack them.

    ``aspect="letterbox"`` zero-pads non-square pairs to a centred square first. Either
    way, when any image is non-square one notice line is logged (per dataset load).
    """
    if resolution < 1:
        raise DataError(f"{images_dir}: resolution must be positive, got {resolution}")
    if aspect not in ASPECTS:
        raise DataError(f"{images_dir}: aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
    _aspect_notice([mask.shape for _, mask in pairs], resolution, source, aspect)
    if aspect == "letterbox":
        pairs = [_letterbox(img, mask) for img, mask in pairs]
    images = np.stack([_resize_image(img, resolution) for img, _ in pairs])
    masks = np.stack([_resize_mask(mask, resolution) for _, mask in pairs])
    return SegDataset(images, masks, tuple(names), source)


def _aspect_notice(shapes, resolution: int, source: str, aspect: str) -> None:
    """Log one line when non-square images change aspect (resize) or get padded (letterbox)."""
    odd = [(w, h) for h, w in shapes if h != w]
    if not odd:
        return
    sizes = sorted(set(odd))
    ratios = [w / h for w, h in odd]
    if len(sizes) == 1 and len(odd) == len(shapes):
        what, was = f"{sizes[0][0]}x{sizes[0][1]} images", f"{ratios[0]:.2f}"
    else:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
        what = f"{len(odd)} of {len(shapes)} images non-square ({shown})"
        was = f"{min(ratios):.2f}" if min(ratios) == max(ratios) else f"{min(ratios):.2f}..{max(ratios):.2f}"
    if aspect == "letterbox":
        log.info("%s: %s zero-padded to square and resized to %dx%d (aspect %s kept; data.aspect: letterbox)",
                 source, what, resolution, resolution, was)
    else:
        log.warning("%s: %s resized to %dx%d (aspect %s -> 1.00; data.aspect: letterbox keeps it)",
                    source, what, resolution, resolution, was)


def _letterbox(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad an image and its mask to a centred square (padding is background 0)."""
    h, w = mask.shape
    if h == w:
        return image, mask
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side, 3), dtype=image.dtype)
    square[top : top + h, left : left + w] = image
    square_mask = np.zeros((side, side), dtype=mask.dtype)
    square_mask[top : top + h, left : left + w] = mask
    return square, square_mask


def _resize_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """Bilinear resize of an RGB uint8 image to ``resolution`` x ``resolution``."""
    if image.shape[:2] == (resolution, resolution):
        return image
    return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.Resampling.BILINEAR))


def _resize_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Resize a 0/1 mask with a BOX filter then ``> 0``: any covered defect pixel counts."""
    if mask.shape == (resolution, resolution):
        return mask.astype(np.uint8)
    box = Image.fromarray(mask * np.uint8(255)).resize((resolution, resolution), Image.Resampling.BOX)
    return (np.asarray(box) > 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Choosing and splitting
# ---------------------------------------------------------------------------------------


def resolve_source(cfg: DataConfig) -> str:
    """The concrete source of a data section: ``auto`` becomes ``crackforest`` when its
    folder exists, else ``synthetic`` (:class:`~linas_lib.config.DataConfig` admits only known sources).
    """
    if cfg.source == "auto":
        return "crackforest" if resolve(cfg.crackforest_dir).is_dir() else "synthetic"
    return cfg.source


def load_dataset(cfg: DataConfig, rng: np.random.Generator) -> SegDataset:
    """The dataset a profile's ``data`` section names.

    ``source``: ``synthetic``; ``crackforest`` (``crackforest_dir``); ``folder``
    (``folder``); ``auto`` = CrackForest when its folder exists, else synthetic. Relative
    paths are resolved from the project root. ``max_images`` caps the real datasets;
    ``aspect`` (``resize`` | ``letterbox``) says how non-square real images become square.

    Args:
        cfg: the profile's data section.
        rng: randomness of the synthetic generator (unused by real datasets).

    Raises:
        DataError: a loader's error (the section's values were checked when it was built).
    """
    source = resolve_source(cfg)
    if source == "crackforest":
        return load_crackforest(resolve(cfg.crackforest_dir), cfg.resolution, cfg.max_images, cfg.aspect)
    if source == "folder":
        if not cfg.folder:
            raise DataError("data.source is 'folder' but data.folder is empty")
        return load_folder(resolve(cfg.folder), cfg.resolution, cfg.max_images, cfg.aspect)
    syn = cfg.synthetic
    return synthetic_dataset(syn.n_images, cfg.resolution, rng, syn.defects_per_image, syn.defect_free_share)


def split_sizes(n: int, fractions) -> tuple[int, int, int]:
    """Train/val/test sizes summing to ``n``, each at least 1 (largest remainders).

    Raises:
        DataError: fractions not three positive numbers summing to 1, or ``n < 3``.
    """
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or (frac <= 0).any() or abs(frac.sum() - 1.0) > 1e-6:
        raise DataError(f"data.split must be three positive fractions summing to 1, got {tuple(fractions)}")
    if n < 3:
        raise DataError(f"dataset has {n} image(s); train/val/test splits need at least 3")
    raw = frac * n
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[i] += 1
    while (sizes == 0).any():
        sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += 1
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def split_dataset(ds: SegDataset, fractions, rng: np.random.Generator) -> dict[str, SegDataset]:
    """Split at random into ``train``/``val``/``test`` (a permutation from ``rng``).

    Args:
        ds: the dataset.
        fractions: train/val/test shares, positive, summing to 1.
        rng: source of the permutation (same state, same split).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, disjoint, covering ``ds``, non-empty.

    Raises:
        DataError: an empty or too small dataset (< 3 images), invalid fractions.
    """
    if len(ds) == 0:
        raise DataError(f"dataset {ds.source}: empty, nothing to split")
    sizes = split_sizes(len(ds), fractions)
    order = rng.permutation(len(ds))
    bounds = np.cumsum((0, *sizes))
    return {name: ds.subset(order[bounds[i] : bounds[i + 1]]) for i, name in enumerate(SPLIT_NAMES)}


def load_splits(profile: Profile, seed: int) -> dict[str, SegDataset]:
    """Train/val/test of the profile's dataset; the same seed gives the same splits.

    The synthetic generator draws from ``default_rng([seed, DATA_STREAM])``, the split from
    ``default_rng([seed, SPLIT_STREAM])``.
    """
    cfg = profile.data
    ds = load_dataset(cfg, np.random.default_rng([seed, DATA_STREAM]))
    return split_dataset(ds, cfg.split, np.random.default_rng([seed, SPLIT_STREAM]))


def available_sources(profile: Profile) -> list[str]:
    """Datasets at hand for the data overview (notebook 00): always ``synthetic``;
    ``crackforest`` when its folder exists; ``folder`` when the profile names one."""
    cfg = profile.data
    sources = ["synthetic"]
    if resolve(cfg.crackforest_dir).is_dir():
        sources.append("crackforest")
    if cfg.source == "folder":
        sources.append("folder")
    return sources


def with_source(profile: Profile, source: str) -> Profile:
    """``profile`` with ``data.source`` replaced (other settings kept)."""
    return replace(profile, data=replace(profile.data, source=source))


def overview_summary(datasets: dict[str, dict[str, SegDataset]], load_s: dict[str, float]) -> dict[str, float]:
    """Headline figures of the data overview, flat ``name.dataset: number``.

    Args:
        datasets: splits per dataset name (``synthetic``, ``crackforest``, ...).
        load_s: seconds taken to generate/load each dataset.
    """
    out: dict[str, float] = {}
    for name, splits in datasets.items():
        masks = np.concatenate([s.masks for s in splits.values()])
        out[f"n_images.{name}"] = len(masks)
        for split, ds in splits.items():
            out[f"n_{split}.{name}"] = len(ds)
        out[f"defect_pct.{name}"] = float(100 * masks.mean())
        out[f"images_with_defect_pct.{name}"] = float(100 * masks.reshape(len(masks), -1).any(axis=1).mean())
        out[f"load_s.{name}"] = float(load_s[name])
    if "synthetic" in load_s:
        out["synthetic_gen_s"] = float(load_s["synthetic"])
    return out


# ---------------------------------------------------------------------------------------
# Model input/output and statistics
# ---------------------------------------------------------------------------------------

_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
_INV_STD = 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)``, ImageNet mean/std normalised.

    Raises:
        DataError: not a uint8 array of shape ``(N, H, W, 3)``.
    """
    x = torch.from_numpy(check_images(images, "preprocess")).permute(0, 3, 1, 2).float()
    return ((x - _MEAN) * _INV_STD).contiguous()


def check_images(images, where: str = "the pipeline") -> np.ndarray:
    """``images`` as a contiguous uint8 ``(N, H, W, 3)`` array.

    Raises:
        DataError: not a uint8 array of that shape (named with ``where``).
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{where} expects uint8 images (N, H, W, 3), got {got}")
    return np.ascontiguousarray(images)


def postprocess(logits: torch.Tensor) -> np.ndarray:
    """Logits ``(N, 2, H, W)`` -> uint8 masks ``(N, H, W)`` (argmax over classes)."""
    if logits.ndim != 4:
        raise DataError(f"postprocess expects logits (N, C, H, W), got shape {tuple(logits.shape)}")
    return logits.detach().argmax(dim=1).to(torch.uint8).cpu().numpy()


def dataset_stats(splits: dict[str, SegDataset]) -> list[dict]:
    """One table row per split: dataset, split, n_images, defect_pixel_pct, images_with_defect.

    ``defect_pixel_pct`` is the mean over images of the share of defect pixels (in %).
    """
    rows = []
    for name, ds in splits.items():
        per_image = ds.masks.reshape(len(ds), -1).mean(axis=1) if len(ds) else np.zeros(0)
        rows.append(
            {
                "dataset": ds.source,
                "split": name,
                "n_images": len(ds),
                "defect_pixel_pct": float(100 * per_image.mean()) if len(ds) else float("nan"),
                "images_with_defect": int((per_image > 0).sum()),
            }
        )
    return rows
