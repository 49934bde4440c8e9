"""Georeferenced co-registration benchmark: the Sentinel-2 pair and a 10980² pair.

    python benchmarks/bench_geo.py               # S2 pair + synthetic 10980² pair
    python benchmarks/bench_geo.py --no-large    # S2 pair only

Sentinel-2 pair (../shared/data/arosics_s2_inter1): global mode (default
grid) and local mode (200 px grid, 256 px windows, AROSICS' COREG_LOCAL
setting), shift against the data README's reference (d_row +1.75,
d_col -0.55 px, +- about 0.1). Synthetic pair: 10980 x 10980 uint16 (a
Sentinel-2 10 m tile's size) tiled from real S2 pixels (mirrored), the
target's content moved by a known (+1.30, -0.60) px (cubic), both tiled
deflate GeoTIFFs with overviews; global mode and a local 1000 px grid
written through the displacement field.

Every case runs in its own process; peak memory is the process's maximum
resident set size. AROSICS is not run here (it needs GDAL's Python
bindings); the numbers quoted from issue 10 (same pair, 2 cores): COREG
1.7 s, (x, y) = (-0.71, +1.80) px; COREG_LOCAL 200 px grid 5.8 s, 81 of 114
valid tie points, median (-0.64, +1.76) px.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '2')

HERE = Path(__file__).resolve().parent
DATA = (
    Path(os.environ.get('NAPARI_COREG_DATA', HERE.parents[1] / 'shared' / 'data'))
    / 'arosics_s2_inter1'
)
REF = DATA / 'ref_S2A_20160608T153121_T33UUU_sub.jp2'
TGT = DATA / 'tgt_S2A_20160529T153631_T33UUU_sub.jp2'
S2_REFERENCE = (1.75, -0.55)
LARGE = 10980
LARGE_SHIFT = (1.30, -0.60)

CASE = r"""
import json, os, resource, sys, time
import numpy as np
from napari_coreg import geo
ref, tgt, spacing, window, local, truth, out = json.loads(sys.argv[1])
t0 = time.perf_counter()
reg = geo.register_rasters(ref, tgt, spacing=spacing, window=window)
t1 = time.perf_counter()
if out:
    model = geo.fit_shift_model(reg.tie_points, 'field') if local else None
    reg.write(out, local=model, order=1)
t2 = time.perf_counter()
tie = reg.tie_points
print(json.dumps({
    'shift_px': reg.shift_px.round(3).tolist(),
    'median_px': np.median(tie.shift_px[tie.valid], axis=0).round(3).tolist(),
    'error_px': (reg.shift_px - truth).round(3).tolist(),
    'valid': tie.n_valid, 'points': len(tie),
    'register_s': round(t1 - t0, 2), 'write_s': round(t2 - t1, 2),
    'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}))
"""


def _run(ref, tgt, spacing, window, local, truth, out) -> dict:
    args = json.dumps([str(ref), str(tgt), spacing, window, local, truth, out])
    done = subprocess.run(
        [sys.executable, '-W', 'ignore', '-c', CASE, args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_large_pair(folder: Path) -> tuple[Path, Path]:
    """The synthetic 10980² pair (see the module notes)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from scipy import ndimage

    src = rasterio.open(REF).read(1)[400:2800, 300:2300].astype(np.float32)
    src[src == 0] = np.median(src[src > 0])

    def fold(i, n):
        i = np.mod(i, 2 * n)
        return np.where(i < n, i, 2 * n - 1 - i)

    def tile(r0, r1, c0, c1):
        return src[
            np.ix_(
                fold(np.arange(r0, r1), src.shape[0]),
                fold(np.arange(c0, c1), src.shape[1]),
            )
        ]

    profile = {
        'driver': 'GTiff', 'height': LARGE, 'width': LARGE, 'count': 1,
        'dtype': 'uint16', 'crs': 'EPSG:32633', 'nodata': 0,
        'compress': 'deflate', 'tiled': True, 'blockxsize': 512,
        'blockysize': 512, 'BIGTIFF': 'IF_SAFER',
        'transform': Affine(10, 0, 300000, 0, -10, 5900000),
    }  # fmt: skip
    ref, tgt = folder / 'ref.tif', folder / 'tgt.tif'
    block, pad = 1024, 8
    with (
        rasterio.open(ref, 'w', **profile) as a,
        rasterio.open(tgt, 'w', **profile) as b,
    ):
        for r in range(0, LARGE, block):
            for c in range(0, LARGE, block):
                n, m = min(block, LARGE - r), min(block, LARGE - c)
                window = Window(c, r, m, n)
                a.write(
                    np.clip(tile(r, r + n, c, c + m), 1, 65535).astype('uint16')[None],
                    window=window,
                )
                # target pixel q shows the reference content at q + shift
                big = tile(r - pad, r + n + pad, c - pad, c + m + pad)
                rr, cc = np.meshgrid(
                    np.arange(n) + pad + LARGE_SHIFT[0],
                    np.arange(m) + pad + LARGE_SHIFT[1],
                    indexing='ij',
                )
                moved = ndimage.map_coordinates(big, [rr, cc], order=3)
                b.write(
                    np.clip(np.rint(moved), 1, 65535).astype('uint16')[None],
                    window=window,
                )
    for path in (ref, tgt):
        with rasterio.open(path, 'r+') as ds:
            ds.build_overviews([2, 4, 8, 16, 32], Resampling.average)
    return ref, tgt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--no-large', action='store_true')
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if REF.exists():
            for name, spacing, local in (
                ('S2 global', None, False),
                ('S2 local 200', 200, True),
            ):
                out = str(tmp / f'{name.replace(" ", "_")}.tif')
                rows.append(
                    (name, _run(REF, TGT, spacing, 256, local, S2_REFERENCE, out))
                )
        if not args.no_large:
            ref, tgt = make_large_pair(tmp)
            rows.append(
                (
                    '10980² global',
                    _run(ref, tgt, None, 256, False, LARGE_SHIFT, str(tmp / 'g.tif')),
                )
            )
            rows.append(
                (
                    '10980² local 1000',
                    _run(ref, tgt, 1000, 256, True, LARGE_SHIFT, str(tmp / 'l.tif')),
                )
            )
    print(
        '| case | shift (d_row, d_col) px | error px | valid / points '
        '| register s | write s | peak MiB |'
    )
    print('|---|---|---|---|---|---|---|')
    for name, r in rows:
        print(
            f'| {name} | {r["shift_px"]} | {r["error_px"]} '
            f'| {r["valid"]} / {r["points"]} | {r["register_s"]} '
            f'| {r["write_s"]} | {r["peak_mib"]} |'
        )


if __name__ == '__main__':
    main()
