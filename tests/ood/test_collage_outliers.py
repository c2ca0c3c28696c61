"""The ``collage`` cheap outlier: several real images of different classes, shrunk and placed on a
plain background (synthmix.training.outliers.collage / corrupt_images(kinds=["collage"]))."""

from __future__ import annotations

import pytest
import torch

from synthmix.training.outliers import OutlierConfig, collage, content_box, corrupt_images

COLOURS = torch.tensor([[220, 20, 20], [20, 200, 20], [20, 20, 220]], dtype=torch.uint8)
WHITE = torch.tensor([250, 250, 250], dtype=torch.uint8)


def _photos(n_per_class=4, size=24, classes=3, bars=0):
    """Class c = a disc of colour c on a white background; ``bars`` rows of black letterbox bars
    at the top and bottom (like ``resize: pad`` of a wide photo)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) < (size / 3) ** 2
    xs, ys = [], []
    for c in range(classes):
        for _ in range(n_per_class):
            img = WHITE[:, None, None].expand(3, size, size).clone()
            img[:, disc] = COLOURS[c][:, None]
            if bars:
                img[:, :bars] = 0
                img[:, size - bars:] = 0
            xs.append(img)
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys)


def _colours_present(img):
    """Which class colours occur (as >= 4 exact pixels) in a uint8 [3,S,S] image."""
    flat = img.reshape(3, -1).T
    return {c for c in range(len(COLOURS)) if int((flat == COLOURS[c]).all(1).sum()) >= 4}


def test_collage_is_deterministic_and_depends_on_the_generator():
    x, y = _photos()
    a, pa = collage(x, y, torch.Generator().manual_seed(7))
    b, pb = collage(x, y, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and pa == pb
    others = [collage(x, y, torch.Generator().manual_seed(s))[0] for s in range(8, 14)]
    assert any(not torch.equal(a, o) for o in others)
    assert a.dtype == torch.uint8 and a.shape == (3, 24, 24)


def test_pieces_have_different_classes_and_show_up_on_a_plain_background():
    x, y = _photos(bars=3)
    counts = set()
    for s in range(30):
        img, picks = collage(x, y, torch.Generator().manual_seed(s))
        labels = y[picks].tolist()
        assert len(labels) in (2, 3) and len(set(labels)) == len(labels)  # classes differ
        counts.add(len(labels))
        assert _colours_present(img) <= set(labels)  # nothing but the picked classes' objects
        # small pieces fit side by side without overlap: every picked class's colour is visible
        small, picks = collage(x, y, torch.Generator().manual_seed(s), scale=(0.3, 0.4), max_overlap=0.0, tries=50)
        assert _colours_present(small) == set(y[picks].tolist())
        # the letterbox bars were trimmed from the pieces and kept as the collage's frame: black
        # exactly in the bar rows, the background in between is the white of the photos
        black = (img == 0).all(0)
        assert bool(black[:3].all() and black[21:].all()) and not bool(black[3:21].any())
        inside = img[:, 3:21].reshape(3, -1).T
        assert int((inside == WHITE).all(1).sum()) > 0.2 * inside.shape[0]
    assert counts == {2, 3}


def test_background_is_the_median_border_colour_where_nothing_was_pasted():
    x, y = _photos()
    x[:, :, :, :] = torch.where(x == WHITE[:, None, None], torch.tensor(90, dtype=torch.uint8), x)  # grey backgrounds
    img, _ = collage(x, y, torch.Generator().manual_seed(0), n_pieces=(2, 2), scale=(0.4, 0.4), cutout=None)
    # two pieces of 10 px on 24 px: the corners of at least one quadrant stay background
    flat = img.reshape(3, -1).T
    assert int((flat == torch.tensor([90, 90, 90], dtype=torch.uint8)).all(1).sum()) >= 24 * 24 - 2 * 10 * 10


def test_content_box_trims_letterbox_bars_only():
    x, _ = _photos(bars=3, size=24)
    # rows 0-2 / 21-23 are black bars and rows 3 / 20 flat white (the disc spans rows 4-19): trimmed;
    # the side columns hold black bars and white, so they are not one colour and stay
    assert content_box(x[0]) == (4, 20, 0, 24)
    flat = torch.zeros(3, 24, 24, dtype=torch.uint8)
    assert content_box(flat) == (0, 24, 0, 24)  # nothing left after trimming -> the whole image


def test_one_class_falls_back_to_distinct_images_and_one_image_to_itself():
    x, y = _photos(classes=1, n_per_class=5)
    img, picks = collage(x, y, torch.Generator().manual_seed(1))
    assert len(picks) >= 2 and len(set(picks)) == len(picks)
    img1, picks1 = collage(x[:1], y[:1], torch.Generator().manual_seed(1))
    assert picks1 == [0] and img1.shape == (3, 24, 24)  # one image: one piece, still a valid image


def test_corrupt_images_collage_kind_and_config():
    x, y = _photos()
    a, kinds = corrupt_images(x, y, 6, seed=3, kinds=["collage", "noise"])
    b, _ = corrupt_images(x, y, 6, seed=3, kinds=["collage", "noise"])
    assert torch.equal(a, b) and kinds == ["collage", "noise"] * 3
    assert all(len(_colours_present(a[j])) >= 2 for j in (0, 2, 4))
    assert "collage" in OutlierConfig(source="corrupted", kinds=["collage"]).kinds
    with pytest.raises(ValueError, match="kinds"):
        OutlierConfig(source="corrupted", kinds=["collages"])
