"""Sample data contributions: misaligned pairs with their ground truth.

Each command returns two layers, fixed (green) and moving (magenta, additive)
so misalignment shows as colour fringes. The exact ``moving_from_fixed`` of
the pair (pixel units, numpy axis order) is in the moving layer's
``metadata['napari_coreg']['ground_truth']``.
"""

from __future__ import annotations

from ..samples import sample_pair
from ._records import METADATA_KEY

__all__ = ['make_homography_pair', 'make_multimodal_pair', 'make_rigid_pair']


def _layers(name: str) -> list[tuple]:
    fixed, moving, truth, info = sample_pair(name)
    meta = {
        METADATA_KEY: {
            'ground_truth': {
                'moving_from_fixed': truth.tolist(),
                'units': 'pixels, numpy (row, col) order',
                'model': info['model'],
                'suggested_metric': info['metric'],
            },
            'sample': {
                k: info[k] for k in ('name', 'description', 'source', 'license')
            },
        }
    }
    rgb = info['rgb']
    fixed_kwargs = {'name': info['fixed_name'], 'rgb': rgb}
    moving_kwargs = {'name': info['moving_name'], 'rgb': rgb, 'metadata': meta}
    if rgb:
        moving_kwargs['opacity'] = 0.5
    else:
        fixed_kwargs['colormap'] = 'green'
        moving_kwargs.update(colormap='magenta', blending='additive')
    return [
        (fixed, fixed_kwargs, 'image'),
        (moving, moving_kwargs, 'image'),
    ]


def make_rigid_pair() -> list[tuple]:
    """Camera photograph and a rotated, shifted copy (rigid)."""
    return _layers('rigid')


def make_multimodal_pair() -> list[tuple]:
    """Brain MR slices, T1 and proton density, shifted (use metric 'mi')."""
    return _layers('multimodal')


def make_homography_pair() -> list[tuple]:
    """RGB photograph and a perspective view of it (use model 'homography')."""
    return _layers('homography')
