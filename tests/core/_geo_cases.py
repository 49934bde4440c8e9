"""Small GeoTIFFs for the geo tests: textures, writing, shifted pairs."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage


def texture(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    image = (image - image.min()) / np.ptp(image)
    return (100 + 3000 * image).astype(np.uint16)


def write_geotiff(path, data, transform, crs='EPSG:32633', nodata=None, names=None):
    data = np.asarray(data)
    bands = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        height=bands.shape[1],
        width=bands.shape[2],
        count=bands.shape[0],
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(bands)
        for i, name in enumerate(names or []):
            ds.set_band_description(i + 1, name)
    return path


def shifted_pair(tmp_path, shift_px, shape=(400, 420), offset=(37, -23)):
    """Reference and target whose content is ``shift_px`` off their georef.

    The target covers another area (``offset`` whole pixels) and its content
    lies ``shift_px`` (target -> reference, pixels) from where its
    geotransform puts it.
    """
    big = texture((shape[0] + 200, shape[1] + 200), seed=3)
    ref = big[100 : 100 + shape[0], 100 : 100 + shape[1]]
    rows, cols = np.indices(shape, dtype=np.float64)
    r0, c0 = 100 + offset[0], 100 + offset[1]
    # target pixel q, georeferenced at reference pixel q + offset, shows what
    # the reference shows at q + offset + shift: it truly lies shift further
    tgt = ndimage.map_coordinates(
        big.astype(np.float32),
        [rows + r0 + shift_px[0], cols + c0 + shift_px[1]],
        order=3,
    )
    tgt = np.clip(np.rint(tgt), 0, 65535).astype(np.uint16)
    ref_t = Affine(10, 0, 500000.0, 0, -10, 5800000.0)
    tgt_t = ref_t @ Affine.translation(offset[1], offset[0])
    ref_path = write_geotiff(tmp_path / 'ref.tif', ref, ref_t, nodata=0)
    tgt_path = write_geotiff(tmp_path / 'tgt.tif', tgt, tgt_t, nodata=0)
    return ref_path, tgt_path
