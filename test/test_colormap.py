import cv2
import numpy as np
import pytest

from semnerf_ros.colormap import (
    UNKNOWN_COLOUR,
    as_palette,
    colorize_labels,
    colorize_scalar,
    label_palette,
    legend_image,
)


def _voc_colour(i):
    """Reference: the VOC devkit's per-id loop (bitget over 8 triplets)."""
    r = g = b = 0
    c = i
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


def test_palette_known_voc_colours():
    pal = label_palette(256)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert tuple(pal[0]) == (0, 0, 0)
    assert tuple(pal[1]) == (128, 0, 0)
    assert tuple(pal[2]) == (0, 128, 0)
    assert tuple(pal[3]) == (128, 128, 0)
    assert tuple(pal[15]) == (192, 128, 128)
    assert [tuple(int(v) for v in c) for c in pal] == [_voc_colour(i) for i in range(256)]
    assert len({tuple(c) for c in pal}) == 256            # all distinct
    assert UNKNOWN_COLOUR not in {tuple(int(v) for v in c) for c in label_palette(512)}


def test_palette_sizes_and_errors():
    assert label_palette(0).shape == (0, 3)
    np.testing.assert_array_equal(label_palette(5), label_palette(300)[:5])
    with pytest.raises(ValueError):
        label_palette(-1)
    with pytest.raises(ValueError):
        as_palette(np.zeros((4, 2)))
    np.testing.assert_array_equal(as_palette(np.array([[0.0, 0.5, 1.0]])), [[0, 128, 255]])


def test_colorize_labels_and_unknown_ids():
    lab = np.array([[0, 1, 2], [3, 7, -1]])
    vis = colorize_labels(lab, 4)
    assert vis.shape == (2, 3, 3) and vis.dtype == np.uint8
    assert tuple(vis[0, 1]) == (128, 0, 0) and tuple(vis[1, 0]) == (128, 128, 0)
    assert tuple(vis[1, 1]) == UNKNOWN_COLOUR and tuple(vis[1, 2]) == UNKNOWN_COLOUR
    custom = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    out = colorize_labels(np.array([[1, 0, 2]]), custom)
    np.testing.assert_array_equal(out[0], [[4, 5, 6], [1, 2, 3], UNKNOWN_COLOUR])
    with pytest.raises(TypeError):
        colorize_labels(np.zeros((2, 2), np.float32), 3)


def test_legend_image_rows_colours_and_wrapping():
    names = ["void", "wall", "floor", "chair", "table", "lamp"]
    pal = label_palette(6)
    leg = legend_image(names, pal, row_height=18)
    assert leg.dtype == np.uint8 and leg.ndim == 3
    assert leg.shape[0] == 4 + 18 * 6
    # each class's swatch colour is drawn in its row
    for cid in range(1, 6):
        row = leg[2 + cid * 18: 2 + (cid + 1) * 18]
        assert np.any(np.all(row == pal[cid], axis=-1)), cid
    sub = legend_image(names, pal, present_ids=[2, 4, 4], row_height=18)
    assert sub.shape[0] == 4 + 18 * 2
    assert np.any(np.all(sub == pal[4], axis=-1)) and not np.any(np.all(sub == pal[3], axis=-1))
    wrapped = legend_image(names, pal, row_height=18, max_height=60)
    assert wrapped.shape[0] <= 60 and wrapped.shape[1] > leg.shape[1]
    # ids without names still get a row
    assert legend_image(["void"], label_palette(4), present_ids=[3]).shape[0] == 4 + 18


def test_colorize_scalar_range_invalid_and_colormap():
    img = np.array([[0.0, 1.0, 2.0], [np.nan, np.inf, 5.0]])
    vis = colorize_scalar(img, vmin=0.0, vmax=2.0, zero_invalid=True)
    assert vis.shape == (2, 3, 3) and vis.dtype == np.uint8
    turbo = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1),
                                           cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)[:, 0]
    assert tuple(vis[0, 0]) == (0, 0, 0)                    # zero = invalid
    assert tuple(vis[1, 0]) == (0, 0, 0) and tuple(vis[1, 1]) == (0, 0, 0)
    np.testing.assert_array_equal(vis[0, 1], turbo[128])
    np.testing.assert_array_equal(vis[0, 2], turbo[255])
    np.testing.assert_array_equal(vis[1, 2], turbo[255])   # above vmax clips
    auto = colorize_scalar(np.array([[1.0, 3.0]]))
    np.testing.assert_array_equal(auto[0], turbo[[0, 255]])
    jet = colorize_scalar(np.array([[1.0, 3.0]]), cmap=cv2.COLORMAP_JET)
    assert not np.array_equal(jet, auto)
    masked = colorize_scalar(np.ones((2, 2)), valid=np.array([[True, False], [True, True]]))
    assert tuple(masked[0, 1]) == (0, 0, 0) and masked[0, 0].any()   # constant image: mid colour
    assert colorize_scalar(np.full((2, 2), np.nan)).max() == 0
    with pytest.raises(ValueError):
        colorize_scalar(np.zeros((2, 2, 2)))
