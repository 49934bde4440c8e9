"""Checkerboard and difference views as pure functions on ViewerModel."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_coreg._napari._qc_views import (
    checkerboard,
    difference,
    hide_view,
    show_view,
)
from napari_coreg._napari._request import request_from_layers


def test_checkerboard_alternates_tiles():
    fixed = np.zeros((16, 16))
    fixed[0, 0] = 1  # scaled to [0, 1] by percentiles: mostly 0
    aligned = np.ones((16, 16)) * np.arange(16)
    board = checkerboard(fixed, aligned, tiles=4)
    assert board[0, 2] == 0  # tile (0, 0): fixed
    assert board[0, 5] > 0  # tile (0, 1): aligned
    assert board[5, 5] == 0 and board[5, 2] > 0  # tiles (1, 1) and (1, 0)
    np.testing.assert_array_equal(difference(aligned, aligned), 0)


def test_views_are_placed_on_the_fixed_grid_and_removed(helpers):
    viewer = ViewerModel()
    rng = np.random.default_rng(0)
    f = viewer.add_image(rng.random((20, 30)), name='f', scale=(2, 2), translate=(5, 0))
    viewer.add_image(rng.random((24, 28)), name='m')
    request = request_from_layers(f, viewer.layers['m'])
    result = helpers.fake_result(np.eye(3), request.fixed.grid, request.moving.grid)
    board = show_view(viewer.layers, request, result, 'checkerboard')
    assert board.name == 'm checkerboard' and board.data.shape == (20, 30)
    np.testing.assert_allclose(board.translate, f.translate)
    again = show_view(viewer.layers, request, result, 'checkerboard')
    assert again is board and len(viewer.layers) == 3
    hide_view(viewer.layers, 'm', 'checkerboard')
    assert [layer.name for layer in viewer.layers] == ['f', 'm']
    with pytest.raises(ValueError, match='kind must be one of'):
        show_view(viewer.layers, request, result, 'overlay')


def test_landmarks_need_the_registered_dimensions():
    from napari_coreg._napari._landmarks import landmarks_world

    viewer = ViewerModel()
    flat = viewer.add_points(np.zeros((2, 2)), name='flat')
    deep = viewer.add_points(np.zeros((2, 3)), name='deep')
    assert landmarks_world(None, None, 3) is None
    with pytest.raises(ValueError, match="'flat' is 2D but the images are registered"):
        landmarks_world(flat, deep, 3)
    fixed, moving = landmarks_world(deep, deep, 2)
    assert fixed.shape == moving.shape == (2, 2)
