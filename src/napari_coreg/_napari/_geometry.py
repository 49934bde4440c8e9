"""Where a napari layer's pixels are: its transforms as homogeneous matrices.

napari places a layer's data in the world through two transforms (napari's
own names): ``data2physical`` (``scale``, ``translate``, ``rotate``,
``shear``) and ``physical2world`` (``affine``). Registration runs in a
*registration frame* per image: pixel index times spacing plus origin (the
core's :class:`~napari_coreg.transforms.Grid`, which has no shear). For a
layer without rotate or shear this frame is napari's physical frame exactly;
otherwise the two differ by a fixed matrix ``Q`` (``reg_from_physical``),
which the write-back folds in.

Conventions: matrices are numpy axis order and named ``a_from_b``; the
registered (spatial) axes are a layer's last ``ndim`` axes; leading axes
(time, channels as a dimension) are sliced at the viewer's current position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..transforms import Grid

__all__ = [
    'LayerFrame',
    'data2physical',
    'data2world',
    'embed_block',
    'layer_frame',
    'physical2world',
    'reg_from_physical',
    'spatial_block',
]

#: Most pixels of the multiscale level that is registered (finer levels of a
#: pyramid layer are skipped); 2D and 3D.
MAX_PIXELS = {2: 4096 * 4096, 3: 384**3}


def data2physical(layer) -> NDArray[np.float64]:
    """``physical_from_data`` of a layer (scale, translate, rotate, shear)."""
    from napari.utils.transforms import CompositeAffine

    return np.asarray(
        CompositeAffine(
            scale=layer.scale,
            translate=layer.translate,
            rotate=layer.rotate,
            shear=layer.shear,
            ndim=layer.ndim,
        ).affine_matrix,
        dtype=np.float64,
    )


def physical2world(layer) -> NDArray[np.float64]:
    """``world_from_physical`` of a layer (its ``affine``)."""
    return np.array(layer.affine.affine_matrix, dtype=np.float64)


def data2world(layer) -> NDArray[np.float64]:
    """``world_from_data`` of a layer (level 0 pixels of a multiscale layer)."""
    return physical2world(layer) @ data2physical(layer)


def _axes(n: int, ndim: int) -> list[int]:
    return [*range(n - ndim, n), n]


def spatial_block(matrix: NDArray, ndim: int, what: str = 'layer') -> NDArray:
    """The ``(ndim + 1)`` block of an ``(n + 1)`` matrix acting on the last axes.

    Raises
    ------
    ValueError
        If the matrix mixes the leading (sliced) axes with the spatial ones,
        so that a slice cannot be registered on its own.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0] - 1
    if n == ndim:
        return matrix.copy()
    if n < ndim:
        raise ValueError(f'{what} has {n} dimensions, fewer than {ndim}')
    lead, space = list(range(n - ndim)), list(range(n - ndim, n))
    cross = (
        np.abs(matrix[np.ix_(lead, space)]).max()
        + np.abs(matrix[np.ix_(space, lead)]).max()
    )
    if cross > 1e-9 * max(1.0, np.abs(matrix).max()):
        raise ValueError(
            f'{what} mixes its leading axes with the last {ndim} in its '
            'rotate/shear/affine: a single slice cannot be registered; '
            'register all dimensions or reset those transforms'
        )
    idx = _axes(n, ndim)
    return matrix[np.ix_(idx, idx)]


def embed_block(matrix: NDArray, block: NDArray) -> NDArray[np.float64]:
    """Replace the spatial block of ``matrix`` (see :func:`spatial_block`)."""
    out = np.array(matrix, dtype=np.float64)
    n, ndim = out.shape[0] - 1, block.shape[0] - 1
    idx = _axes(n, ndim)
    out[np.ix_(idx, idx)] = block
    return out


@dataclass(frozen=True, eq=False)
class LayerFrame:
    """An image layer's part that is registered, and how it sits in the world.

    Attributes
    ----------
    index : tuple
        Index into the level's array: integers for the leading axes, then
        full slices for the ``ndim`` spatial axes.
    level : int or None
        Multiscale level used (``None`` for a plain layer).
    grid : Grid
        Registration grid of the sliced level: its pixels to the registration
        frame (spacing and origin; no rotation or shear).
    reg_from_physical : ndarray, shape (ndim + 1, ndim + 1)
        From the layer's napari physical frame (spatial block) to the
        registration frame; the identity unless the layer has rotate/shear.
    world_from_physical : ndarray, shape (ndim + 1, ndim + 1)
        Spatial block of the layer's ``affine``.
    rgb : bool
        Whether the last array axis holds RGB(A) channels.
    """

    index: tuple
    level: int | None
    grid: Grid
    reg_from_physical: NDArray[np.float64]
    world_from_physical: NDArray[np.float64]
    rgb: bool
    shape: tuple[int, ...] = field(default=())

    @property
    def world_from_reg(self) -> NDArray[np.float64]:
        """From the registration frame to world coordinates."""
        return self.world_from_physical @ np.linalg.inv(self.reg_from_physical)

    @property
    def world_from_px(self) -> NDArray[np.float64]:
        """From pixels of the registered array to world coordinates."""
        return self.world_from_reg @ self.grid.phys_from_px

    def array(self, data) -> NDArray:
        """Load the registered part of ``data`` (a layer's ``data``) as numpy."""
        level = data[self.level] if self.level is not None else data
        return np.asarray(level[self.index])


def _reg_grid(block: NDArray, shape: tuple[int, ...]) -> Grid:
    """Registration grid of a ``physical_from_px`` block: spacing and origin only."""
    ndim = block.shape[0] - 1
    spacing = np.linalg.norm(block[:ndim, :ndim], axis=0)
    return Grid(shape, spacing=tuple(spacing), origin=tuple(block[:ndim, ndim]))


def _clean(matrix: NDArray) -> NDArray[np.float64]:
    eye = np.eye(matrix.shape[0])
    return eye if np.allclose(matrix, eye, atol=1e-9) else matrix


def reg_from_physical(layer, ndim: int) -> NDArray[np.float64]:
    """From a layer's napari physical frame to its registration frame.

    The identity unless the layer has ``rotate`` or ``shear`` (or a negative
    scale); any layer type. Spatial block (last ``ndim`` axes).
    """
    block = spatial_block(data2physical(layer), ndim, f'layer {layer.name!r}')
    grid = _reg_grid(block, (1,) * ndim)
    return _clean(grid.phys_from_px @ np.linalg.inv(block))


def _choose_level(layer, ndim: int) -> int:
    shapes = np.asarray(layer.level_shapes)
    sizes = shapes[:, -ndim:].prod(axis=1)
    fitting = np.nonzero(sizes <= MAX_PIXELS[ndim])[0]
    return int(fitting[0]) if fitting.size else len(shapes) - 1


def layer_frame(layer, ndim: int, world_point=None) -> LayerFrame:
    """Describe the part of an image/labels layer that a registration uses.

    Parameters
    ----------
    layer : napari.layers.Image or napari.layers.Labels
        The layer.
    ndim : {2, 3}
        Number of spatial axes registered: the layer's last ``ndim`` axes.
    world_point : sequence of float, optional
        Current viewer position (``viewer.dims.point``), which selects the
        slice of the leading axes; default the first slice.

    Notes
    -----
    Multiscale layers: the finest level with at most :data:`MAX_PIXELS`
    spatial pixels is used (``data[0]`` for all but huge images); napari maps
    its pixel ``i`` to level-0 pixel ``i * downsample_factor``, and so do we.
    """
    n = layer.ndim
    if n < ndim:
        raise ValueError(
            f'layer {layer.name!r} has {n} dimensions: it cannot be registered '
            f'in {ndim}D'
        )
    multiscale = bool(getattr(layer, 'multiscale', False))
    level = _choose_level(layer, ndim) if multiscale else None
    shape0 = tuple(
        int(s) for s in (layer.level_shapes[0] if multiscale else layer.data.shape[:n])
    )
    if multiscale:
        factors = np.asarray(layer.downsample_factors[level], dtype=np.float64)
        shape = tuple(int(s) for s in layer.level_shapes[level])
    else:
        factors = np.ones(n)
        shape = shape0
    lead = n - ndim
    if lead:
        if world_point is None:
            point0 = np.zeros(n)
        else:
            point0 = np.asarray(layer.world_to_data(np.asarray(world_point)), float)
        lead_idx = tuple(
            int(np.clip(np.round(point0[a] / factors[a]), 0, shape[a] - 1))
            for a in range(lead)
        )
    else:
        lead_idx = ()
    index = (*lead_idx, *(slice(None),) * ndim)
    physical_from_level = data2physical(layer) @ np.diag([*factors, 1.0])
    block = spatial_block(physical_from_level, ndim, f'layer {layer.name!r}')
    grid = _reg_grid(block, shape[lead:])
    reg_from_physical = _clean(grid.phys_from_px @ np.linalg.inv(block))
    return LayerFrame(
        index=index,
        level=level,
        grid=grid,
        reg_from_physical=reg_from_physical,
        world_from_physical=spatial_block(
            physical2world(layer), ndim, f'the affine of layer {layer.name!r}'
        ),
        rgb=bool(getattr(layer, 'rgb', False)),
        shape=shape0,
    )
