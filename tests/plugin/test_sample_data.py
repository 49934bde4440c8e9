"""Sample data contributions: two layers each, ground truth in metadata."""

from __future__ import annotations

import numpy as np
import pytest

from napari_coreg._napari._writeback import METADATA_KEY


@pytest.mark.parametrize('key', ['rigid_pair', 'multimodal_pair', 'homography_pair'])
def test_sample_data_opens_with_ground_truth(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample('napari-coreg', key)
    assert len(viewer.layers) == 2
    fixed, moving = viewer.layers
    truth = np.asarray(
        moving.metadata[METADATA_KEY]['ground_truth']['moving_from_fixed']
    )
    assert truth.shape == (3, 3)
    assert fixed.data.shape == moving.data.shape
