"""Datasets: synthetic generator, CrackForest and folder loaders, splits, pre/post-processing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from linas_lib import data
from linas_lib.config import load_profile
from linas_lib.data import DataError, SegDataset


@pytest.fixture(scope="module")
def synth() -> SegDataset:
    return data.synthetic_dataset(40, 64, np.random.default_rng(0))


# --- synthetic -------------------------------------------------------------------------


def test_synthetic_shapes_dtypes_values(synth):
    assert synth.images.shape == (40, 64, 64, 3) and synth.images.dtype == np.uint8
    assert synth.masks.shape == (40, 64, 64) and synth.masks.dtype == np.uint8
    assert set(np.unique(synth.masks).tolist()) == {0, 1}
    assert len(synth) == 40 and len(synth.names) == 40 and len(set(synth.names)) == 40
    assert synth.source == "synthetic"
    assert synth.images.std() > 5  # textured, not flat


def test_synthetic_is_deterministic_per_generator(synth):
    again = data.synthetic_dataset(40, 64, np.random.default_rng(0))
    other = data.synthetic_dataset(40, 64, np.random.default_rng(1))
    np.testing.assert_array_equal(synth.images, again.images)
    np.testing.assert_array_equal(synth.masks, again.masks)
    assert not np.array_equal(synth.images, other.images)
    assert not np.array_equal(synth.masks, other.masks)


def test_synthetic_defect_share_is_realistic():
    ds = data.synthetic_dataset(120, 128, np.random.default_rng(3))
    per_image = ds.masks.reshape(len(ds), -1).mean(axis=1)
    assert 0.005 < per_image.mean() < 0.05  # a few percent of the pixels, like CrackForest
    assert per_image.max() < 0.2
    free = (per_image == 0).mean()
    assert 0.02 < free < 0.25  # defect_free_share=0.1 (plus defects clipped at the border)


def test_synthetic_defects_differ_from_surface(synth):
    grey = synth.images.astype(float).mean(axis=3)
    for i in np.flatnonzero(synth.masks.reshape(40, -1).any(axis=1))[:10]:
        inside, outside = grey[i][synth.masks[i] == 1], grey[i][synth.masks[i] == 0]
        assert abs(inside.mean() - outside.mean()) > 3 or inside.std() > 10


def test_synthetic_defect_free_share_extremes():
    clean = data.synthetic_dataset(8, 32, np.random.default_rng(0), defect_free_share=1.0)
    assert clean.masks.sum() == 0
    dirty = data.synthetic_dataset(8, 64, np.random.default_rng(0), defects_per_image=(2, 2), defect_free_share=0.0)
    assert (dirty.masks.reshape(8, -1).sum(axis=1) > 0).all()


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(DataError, match="defects_per_image"):
        data.synthetic_dataset(4, 32, np.random.default_rng(0), defects_per_image=(3, 1))
    with pytest.raises(DataError, match="defect_free_share"):
        data.synthetic_dataset(4, 32, np.random.default_rng(0), defect_free_share=1.5)
    with pytest.raises(DataError, match="n_images"):
        data.synthetic_dataset(0, 32, np.random.default_rng(0))


def test_subset_keeps_order_and_names(synth):
    sub = synth.subset([5, 2])
    assert sub.names == (synth.names[5], synth.names[2])
    np.testing.assert_array_equal(sub.images[1], synth.images[2])
    assert len(synth.subset(np.arange(40) < 3)) == 3


# --- splits ----------------------------------------------------------------------------


def test_split_sizes_disjoint_and_deterministic(synth):
    splits = data.split_dataset(synth, (0.6, 0.2, 0.2), np.random.default_rng(7))
    assert list(splits) == ["train", "val", "test"]
    assert [len(s) for s in splits.values()] == [24, 8, 8]
    names = [set(s.names) for s in splits.values()]
    assert names[0].isdisjoint(names[1]) and names[0].isdisjoint(names[2]) and names[1].isdisjoint(names[2])
    assert set.union(*names) == set(synth.names)
    again = data.split_dataset(synth, (0.6, 0.2, 0.2), np.random.default_rng(7))
    other = data.split_dataset(synth, (0.6, 0.2, 0.2), np.random.default_rng(8))
    assert again["test"].names == splits["test"].names
    assert other["test"].names != splits["test"].names


@pytest.mark.parametrize("n", [3, 4, 5, 7, 11, 118])
def test_split_sizes_cover_n_and_are_non_empty(n):
    sizes = data.split_sizes(n, (0.6, 0.2, 0.2))
    assert sum(sizes) == n and min(sizes) >= 1
    assert data.split_sizes(3, (0.98, 0.01, 0.01)) == (1, 1, 1)


def test_split_errors(synth):
    with pytest.raises(DataError, match="at least 3"):
        data.split_dataset(synth.subset([0, 1]), (0.6, 0.2, 0.2), np.random.default_rng(0))
    with pytest.raises(DataError, match="empty"):
        data.split_dataset(synth.subset([]), (0.6, 0.2, 0.2), np.random.default_rng(0))
    with pytest.raises(DataError, match="summing to 1"):
        data.split_dataset(synth, (0.6, 0.2, 0.3), np.random.default_rng(0))
    with pytest.raises(DataError, match="positive"):
        data.split_dataset(synth, (0.8, 0.2, 0.0), np.random.default_rng(0))


def test_load_splits_smoke_profile_is_deterministic_from_seed():
    profile = load_profile("smoke")
    a, b, c = data.load_splits(profile, 0), data.load_splits(profile, 0), data.load_splits(profile, 1)
    n = profile.data.synthetic.n_images
    assert sum(len(s) for s in a.values()) == n
    assert all(s.images.shape[1:] == (profile.data.resolution, profile.data.resolution, 3) for s in a.values())
    np.testing.assert_array_equal(a["train"].images, b["train"].images)
    assert not np.array_equal(a["train"].images, c["train"].images)


def test_load_dataset_config_errors(tmp_path):
    cfg = load_profile("smoke").data
    with pytest.raises(ValueError, match="source = 'imagenet' must be one of auto, synthetic"):
        dataclasses.replace(cfg, source="imagenet")  # a data section cannot hold an unknown source
    with pytest.raises(ValueError, match="resolution = 100 must be a positive multiple of 32"):
        dataclasses.replace(cfg, resolution=100)
    with pytest.raises(DataError, match="data.folder"):
        data.load_dataset(dataclasses.replace(cfg, source="folder"), np.random.default_rng(0))
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        data.load_dataset(dataclasses.replace(cfg, source="crackforest", crackforest_dir=str(missing)), None)


def test_auto_falls_back_to_synthetic_without_crackforest(tmp_path):
    cfg = dataclasses.replace(load_profile("smoke").data, source="auto", crackforest_dir=str(tmp_path / "absent"))
    assert data.load_dataset(cfg, np.random.default_rng(0)).source == "synthetic"


def test_dataset_stats_rows(synth):
    splits = data.split_dataset(synth, (0.5, 0.25, 0.25), np.random.default_rng(0))
    rows = data.dataset_stats(splits)
    assert [r["split"] for r in rows] == ["train", "val", "test"]
    assert sum(r["n_images"] for r in rows) == 40
    test = splits["test"]
    assert rows[2]["defect_pixel_pct"] == pytest.approx(100 * test.masks.mean())
    assert rows[2]["images_with_defect"] == int(test.masks.reshape(len(test), -1).any(axis=1).sum())


# --- pre/post-processing ---------------------------------------------------------------


def test_preprocess_normalises_imagenet():
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    images[1] = 255
    x = data.preprocess(images)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    mean, std = torch.tensor(data.IMAGENET_MEAN), torch.tensor(data.IMAGENET_STD)
    torch.testing.assert_close(x[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(x[1, :, 5, 7], (1 - mean) / std)
    with pytest.raises(DataError, match="uint8"):
        data.preprocess(images.astype(np.float32))
    with pytest.raises(DataError, match="N, H, W, 3"):
        data.preprocess(images[..., 0])


def test_postprocess_argmax():
    logits = torch.zeros(2, 2, 8, 8)
    logits[1, 1, 2:4, 3] = 5.0
    masks = data.postprocess(logits)
    assert masks.shape == (2, 8, 8) and masks.dtype == np.uint8
    assert masks[0].sum() == 0 and masks[1].sum() == 2 and masks[1, 2, 3] == 1


# --- CrackForest -----------------------------------------------------------------------


def test_crackforest_loads_118_labelled_images(shared_data):
    ds = data.load_crackforest(shared_data / "crackforest", 128)
    assert len(ds) == 118 and ds.source == "crackforest"
    assert ds.images.shape == (118, 128, 128, 3) and ds.masks.shape == (118, 128, 128)
    assert set(np.unique(ds.masks).tolist()) == {0, 1}
    assert "201" not in ds.names and ds.names[0] == "001"
    share = ds.masks.mean()
    assert 0.01 < share < 0.04  # 1.6 % at 480x320; BOX>0 downsampling widens thin cracks
    assert (ds.masks.reshape(118, -1).sum(axis=1) > 0).all()


def test_crackforest_max_images(shared_data):
    ds = data.load_crackforest(shared_data / "crackforest", 64, max_images=5)
    assert ds.names == ("001", "002", "003", "004", "005") and ds.images.shape == (5, 64, 64, 3)


def test_crackforest_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load_crackforest(tmp_path / "cfd", 64)
    (tmp_path / "image").mkdir()
    (tmp_path / "groundTruth").mkdir()
    Image.new("RGB", (48, 40)).save(tmp_path / "image" / "001.jpg")
    with pytest.raises(DataError, match="no image/NNN.jpg has a groundTruth"):
        data.load_crackforest(tmp_path, 64)
    (tmp_path / "groundTruth" / "001.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="001.mat"):
        data.load_crackforest(tmp_path, 64)


# --- folder datasets -------------------------------------------------------------------


def _write_pair(root, stem, size=(48, 40), mask_values=(0, 255), image_ext="png", mask_ext="png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(stem))
    image = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    mask = np.full((size[1], size[0]), mask_values[0], dtype=np.uint8)
    mask[10:20, 5:30] = mask_values[1]
    Image.fromarray(image).save(root / "images" / f"{stem}.{image_ext}")
    Image.fromarray(mask).save(root / "masks" / f"{stem}.{mask_ext}")
    return image, mask


def test_folder_happy_path(tmp_path):
    _write_pair(tmp_path, "a", mask_values=(0, 255))
    _write_pair(tmp_path, "b", mask_values=(0, 1), image_ext="jpg", mask_ext="bmp")
    _write_pair(tmp_path, "c", size=(64, 64), image_ext="tif")
    rgb_mask = np.zeros((40, 48, 3), dtype=np.uint8)
    rgb_mask[5:9, 5:9] = 255
    _write_pair(tmp_path, "d")
    Image.fromarray(rgb_mask).save(tmp_path / "masks" / "d.png")
    ds = data.load_folder(tmp_path, 32)
    assert ds.names == ("a", "b", "c", "d") and ds.source == f"folder:{tmp_path}"
    assert ds.images.shape == (4, 32, 32, 3) and ds.images.dtype == np.uint8
    assert set(np.unique(ds.masks).tolist()) == {0, 1}
    assert ds.masks[0].sum() > 0 and ds.masks[1].sum() > 0 and ds.masks[3].sum() > 0
    # at native size nothing is resampled: 10x25 defect pixels
    native = data.load_folder(tmp_path, 64, max_images=0).subset([2])
    assert native.masks.sum() == 250
    assert len(data.load_folder(tmp_path, 32, max_images=2)) == 2


def test_folder_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="nothere.*not found"):
        data.load_folder(tmp_path / "nothere", 32)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="masks.*not found"):
        data.load_folder(tmp_path, 32)
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="images.*no images"):
        data.load_folder(tmp_path, 32)


def test_folder_unmatched_files(tmp_path):
    _write_pair(tmp_path, "a")
    Image.new("RGB", (48, 40)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(DataError, match="lonely.png: image without a mask"):
        data.load_folder(tmp_path, 32)
    (tmp_path / "images" / "lonely.png").unlink()
    Image.new("L", (48, 40)).save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(DataError, match="orphan.png: mask without an image"):
        data.load_folder(tmp_path, 32)


def test_folder_duplicate_stem(tmp_path):
    _write_pair(tmp_path, "a")
    Image.new("RGB", (48, 40)).save(tmp_path / "images" / "a.jpg")
    with pytest.raises(DataError, match="two files with stem 'a'"):
        data.load_folder(tmp_path, 32)


def test_folder_size_mismatch(tmp_path):
    _write_pair(tmp_path, "a")
    Image.new("L", (50, 40)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a.png: mask size 50x40 does not match image a.png size 48x40"):
        data.load_folder(tmp_path, 32)


def test_folder_bad_mask_values(tmp_path):
    _write_pair(tmp_path, "a", mask_values=(0, 128))
    with pytest.raises(DataError, match=r"a.png: mask values must be \{0, 1\} or \{0, 255\}, found \[0, 128\]"):
        data.load_folder(tmp_path, 32)
    _write_pair(tmp_path, "a", mask_values=(1, 255))
    with pytest.raises(DataError, match="mask values"):
        data.load_folder(tmp_path, 32)


def test_folder_colour_mask_rejected(tmp_path):
    _write_pair(tmp_path, "a")
    colour = np.zeros((40, 48, 3), dtype=np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match="a.png: mask must be single channel"):
        data.load_folder(tmp_path, 32)


def test_folder_palette_mask_is_read_by_colour_not_index(tmp_path):
    _write_pair(tmp_path, "a")
    index = np.zeros((40, 48), dtype=np.uint8)  # index 0 is white, index 1 black: mostly defect
    index[:4] = 1
    mask = Image.fromarray(index, mode="P")
    mask.putpalette([255, 255, 255, 0, 0, 0] + [0, 0, 0] * 254)
    mask.save(tmp_path / "masks" / "a.png")
    ds = data.load_folder(tmp_path, 48)
    assert ds.masks.mean() == pytest.approx(36 / 40, abs=0.03)  # the white rows, not the index-1 rows
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)  # labelling tools' colours: read by label index
    mask.save(tmp_path / "masks" / "a.png")
    assert data.load_folder(tmp_path, 48).masks.mean() == pytest.approx(4 / 40, abs=0.03)


def test_folder_corrupt_file(tmp_path):
    _write_pair(tmp_path, "a")
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="a.png: unreadable or corrupt"):
        data.load_folder(tmp_path, 32)
    _write_pair(tmp_path, "a")
    (tmp_path / "masks" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="masks/a.png: unreadable or corrupt"):
        data.load_folder(tmp_path, 32)


def test_folder_image_too_small(tmp_path):
    _write_pair(tmp_path, "tiny", size=(40, 20))
    with pytest.raises(DataError, match="tiny.png: image is 40x20 px, smaller than 32 px"):
        data.load_folder(tmp_path, 32)


def test_load_splits_folder_source(tmp_path):
    for stem in "abcde":
        _write_pair(tmp_path, stem)
    profile = load_profile("smoke")
    profile = dataclasses.replace(
        profile, data=dataclasses.replace(profile.data, source="folder", folder=str(tmp_path), resolution=32)
    )
    splits = data.load_splits(profile, 0)
    assert sum(len(s) for s in splits.values()) == 5 and min(len(s) for s in splits.values()) >= 1
    assert splits["train"].source == f"folder:{tmp_path}"


def test_crackforest_label_without_ground_truth(tmp_path):
    from scipy.io import savemat

    (tmp_path / "image").mkdir()
    (tmp_path / "groundTruth").mkdir()
    Image.new("RGB", (48, 40)).save(tmp_path / "image" / "007.jpg")
    savemat(tmp_path / "groundTruth" / "007.mat", {"other": np.zeros((40, 48))})
    with pytest.raises(DataError, match="007.mat: not a CrackForest label"):
        data.load_crackforest(tmp_path, 64)


def _crackforest_pair(root, image_size=(48, 40), label=None):
    """One CrackForest-style pair: ``image/007.jpg`` and ``groundTruth/007.mat``."""
    from scipy.io import savemat

    (root / "image").mkdir(exist_ok=True)
    (root / "groundTruth").mkdir(exist_ok=True)
    Image.new("RGB", image_size).save(root / "image" / "007.jpg")
    label = np.ones(image_size[::-1], dtype=np.uint8) if label is None else label
    savemat(root / "groundTruth" / "007.mat", {"groundTruth": {"Segmentation": label}})


def test_crackforest_label_of_another_size_is_refused(tmp_path):
    _crackforest_pair(tmp_path, label=np.ones((20, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=r"007\.mat: mask size 20x20 does not match image 007\.jpg size 48x40"):
        data.load_crackforest(tmp_path, 64)


@pytest.mark.parametrize("value", [7, 0])
def test_crackforest_label_outside_its_classes_is_refused(tmp_path, value):
    label = np.ones((40, 48), dtype=np.uint8)
    label[0, 0] = value
    _crackforest_pair(tmp_path, label=label)
    with pytest.raises(DataError, match=rf"007\.mat: groundTruth\.Segmentation holds \[{value}\], outside"):
        data.load_crackforest(tmp_path, 64)


def test_crackforest_pair_loads(tmp_path):
    label = np.ones((40, 48), dtype=np.uint8)
    label[10:20, 5] = 2
    label[0, :4] = 3  # a rare extra class: background
    _crackforest_pair(tmp_path, label=label)
    ds = data.load_crackforest(tmp_path, 32)
    assert ds.masks.shape == (1, 32, 32) and 0 < ds.masks.sum() < 32 * 32


def test_sixteen_bit_image_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((40, 40), 60000, dtype=np.uint16)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a\.png: a I;16\w* image \(more than 8 bits"):
        data.load_folder(tmp_path, 32)


def test_sources_and_overview_summary(tmp_path, synth):
    profile = load_profile("smoke")
    absent = data.with_source(profile, "auto")
    absent = dataclasses.replace(absent, data=dataclasses.replace(absent.data, crackforest_dir=str(tmp_path / "x")))
    assert data.resolve_source(absent.data) == "synthetic"
    assert data.available_sources(absent) == ["synthetic"]
    assert data.with_source(profile, "folder").data.source == "folder"
    splits = data.split_dataset(synth, (0.5, 0.25, 0.25), np.random.default_rng(0))
    summary = data.overview_summary({"synthetic": splits}, {"synthetic": 0.5})
    assert summary["n_images.synthetic"] == 40 and summary["n_train.synthetic"] == 20
    assert summary["defect_pct.synthetic"] == pytest.approx(100 * synth.masks.mean())
    assert summary["synthetic_gen_s"] == 0.5


# --- non-square images: data.aspect ----------------------------------------------------


def _wide_pair(root, stem="w", size=(64, 32)):
    """A non-square pair whose mask is defect everywhere (so any padding shows as 0)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(1).integers(1, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    Image.fromarray(np.full((size[1], size[0]), 255, dtype=np.uint8)).save(root / "masks" / f"{stem}.png")


def test_letterbox_pads_with_background(tmp_path):
    _wide_pair(tmp_path)  # 64x32: padded to 64x64 (16 rows top and bottom), then halved
    ds = data.load_folder(tmp_path, 32, aspect="letterbox")
    assert ds.images.shape == (1, 32, 32, 3) and ds.masks.shape == (1, 32, 32)
    assert (ds.masks[0, :8] == 0).all() and (ds.masks[0, 24:] == 0).all()  # padding is background
    assert (ds.masks[0, 8:24] == 1).all()
    assert (ds.images[0, :7] == 0).all() and (ds.images[0, 25:] == 0).all()  # zero padding
    assert ds.images[0, 9:23].min() > 0
    stretched = data.load_folder(tmp_path, 32)  # resize: the mask fills the square
    assert stretched.masks.all()


def test_letterbox_portrait_pads_columns(tmp_path):
    _wide_pair(tmp_path, size=(32, 64))
    ds = data.load_folder(tmp_path, 32, aspect="letterbox")
    assert (ds.masks[0, :, :8] == 0).all() and (ds.masks[0, :, 24:] == 0).all() and (ds.masks[0, :, 8:24] == 1).all()


def test_resize_notice_once_per_load(tmp_path, caplog):
    for stem in "abc":
        _write_pair(tmp_path, stem)  # 48x40
    with caplog.at_level("INFO", logger="linas_lib.data"):
        data.load_folder(tmp_path, 32)
    notices = [r.getMessage() for r in caplog.records if r.name == "linas_lib.data"]
    assert notices == [f"folder:{tmp_path}: 48x40 images resized to 32x32 (aspect 1.20 -> 1.00; "
                       "data.aspect: letterbox keeps it)"]
    caplog.clear()
    with caplog.at_level("INFO", logger="linas_lib.data"):
        data.load_folder(tmp_path, 32, aspect="letterbox")
    notices = [r.getMessage() for r in caplog.records if r.name == "linas_lib.data"]
    assert len(notices) == 1 and "zero-padded to square" in notices[0] and "aspect 1.20 kept" in notices[0]


def test_no_notice_for_square_images(tmp_path, caplog):
    _write_pair(tmp_path, "sq", size=(64, 64))
    with caplog.at_level("INFO", logger="linas_lib.data"):
        ds = data.load_folder(tmp_path, 32, aspect="letterbox")
    assert ds.images.shape == (1, 32, 32, 3)
    assert not [r for r in caplog.records if r.name == "linas_lib.data"]
    np.testing.assert_array_equal(ds.images, data.load_folder(tmp_path, 32).images)  # square: same either way


def test_mixed_sizes_notice(tmp_path, caplog):
    _write_pair(tmp_path, "a", size=(48, 40))
    _write_pair(tmp_path, "b", size=(64, 64))
    _write_pair(tmp_path, "c", size=(40, 60))
    with caplog.at_level("INFO", logger="linas_lib.data"):
        data.load_folder(tmp_path, 32)
    (notice,) = [r.getMessage() for r in caplog.records if r.name == "linas_lib.data"]
    assert "2 of 3 images non-square (40x60, 48x40)" in notice and "aspect 0.67..1.20 -> 1.00" in notice


def test_unknown_aspect_names_the_key(tmp_path):
    cfg = load_profile("smoke").data
    with pytest.raises(ValueError, match=r"aspect = 'crop' must be one of resize, letterbox"):
        dataclasses.replace(cfg, aspect="crop")
    _write_pair(tmp_path, "a")
    with pytest.raises(DataError, match="aspect must be one of"):
        data.load_folder(tmp_path, 32, aspect="stretch")


def test_aspect_from_profile_yaml(tmp_path):
    from linas_lib.config import PROFILE_DIR

    smoke = (PROFILE_DIR / "smoke.yaml").read_text()
    text = smoke.replace("  resolution: 128\n", "  resolution: 128\n  aspect: letterbox\n", 1)
    (tmp_path / "lb.yaml").write_text(text)
    assert load_profile(tmp_path / "lb.yaml").data.aspect == "letterbox"
    assert load_profile("smoke").data.aspect == "resize"


def test_crackforest_resize_notice_and_letterbox(shared_data, caplog):
    with caplog.at_level("INFO", logger="linas_lib.data"):
        resized = data.load_crackforest(shared_data / "crackforest", 64, max_images=3)
    assert [r.getMessage() for r in caplog.records if r.name == "linas_lib.data"] == [
        "crackforest: 480x320 images resized to 64x64 (aspect 1.50 -> 1.00; data.aspect: letterbox keeps it)"
    ]
    boxed = data.load_crackforest(shared_data / "crackforest", 64, max_images=3, aspect="letterbox")
    assert boxed.images.shape == (3, 64, 64, 3) and boxed.names == resized.names
    # 480x320 padded to 480x480: 80 rows on each side, i.e. ~10.7 of 64 rows (10 of them pure padding)
    assert (boxed.masks[:, :10] == 0).all() and (boxed.masks[:, 54:] == 0).all()
    assert (boxed.images[:, :10] == 0).all() and (boxed.images[:, 54:] == 0).all()
    assert boxed.masks[:, 10:54].sum() > 0 and boxed.images[:, 12:52].min(axis=(1, 2, 3)).max() > 0
