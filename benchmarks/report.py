"""The benchmark document (docs/benchmarks.md), written from stored records only.

    python benchmarks/report.py                      # rewrite docs/benchmarks.md
    python benchmarks/report.py --store R.json --out /tmp/b.md

Reads ``benchmarks/results/records.json`` (the 2D pairs, graf, memory and
thread records of :mod:`bench_pairs`, :mod:`bench_graf`, :mod:`bench_memory`
and :mod:`bench_threads`, and one header per run with its versions) and the
peers' published figures in ``benchmarks/results/peers_reference.json``;
runs nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import report_targets
from harness import RESULTS, ROOT, git_head, load, versions_line
from report_tables import (
    OURS,
    capture_cases,
    family_table,
    fmt_err,
    fmt_time,
    graf_table,
    md_table,
    memory_table,
    ours_failures,
    ratio_table,
    select,
    stats,
)

STORE = RESULTS / 'records.json'
REFERENCE = RESULTS / 'peers_reference.json'
DOCUMENT = ROOT / 'docs' / 'benchmarks.md'
MONO, MULTI = 'mono', 'multi'
POLICIES = ('default', 'PASSIVE')


# --------------------------------------------------------------------------
# the peers against their published figures


def peers_vs_reference(records: list[dict], sizes: list[int], path: Path) -> str:
    """Measured peers next to PEERS.md's figures (read from ``path``)."""
    if not path.exists():
        return f'(no reference figures: {path.name} not found)\n'
    rows = []
    for ref in json.loads(path.read_text())['reference']:
        who, method = ref['who'], ref['method']
        family, modality = ref['family'], ref['modality']
        row = [who, method, f'{family} {modality}']
        for size in sizes:
            recs = select(
                records,
                who=who,
                method=method,
                family=family,
                modality=modality,
                size=size,
            )
            got = '-'
            if recs:
                s = stats(recs)
                got = f'{s["ok1"]}/{s["n"]}, {fmt_err(s["err"])}, {fmt_time(s["time"])}'
            want = ', '.join(f'{v:g}' for v in ref['sizes'].get(str(size), ()))
            row.append(f'{got} ({want})')
        rows.append(row)
    return md_table(
        ['peer', 'model (metric)', 'case']
        + [f'{s}²: measured (PEERS.md)' for s in sizes],
        rows,
    )


# --------------------------------------------------------------------------
# sections


def thread_section(store: dict) -> list[str]:
    """Wall (CPU) times per OpenMP wait policy and thread count."""
    recs = store.get('thread_check')
    if not recs or 'policy' not in recs[0]:
        return []
    keys = [(p, n) for p in POLICIES for n in (1, 2)]
    rows = []
    for who, method in dict.fromkeys((r['who'], r['method']) for r in recs):
        row = [who, method]
        for policy, n in keys:
            got = [
                r
                for r in recs
                if (r['who'], r['method'], r['policy'], r['threads'])
                == (who, method, policy, n)
            ]
            row.append(
                f'{fmt_time(got[0]["time"])} ({fmt_time(got[0]["cpu"])})'
                if got
                else '-'
            )
        rows.append(row)
    load_avg = np.mean([r['load'] for r in recs])
    case = recs[0].get('case', 'affine-mono-256-1-astronaut')
    heads = [f'OMP_WAIT_POLICY {p}, {n} thread(s)' for p, n in keys]
    return [
        '## Thread sensitivity\n',
        f'One 256² affine case ({case}): median '
        'wall (CPU) time in s of 3 runs in a fresh process per column, load '
        f'average about {load_avg:.1f} on 2 cores. With the OpenMP default (threads '
        'spin while they wait) and other processes busy on the cores, torch with '
        '2 threads waits for a descheduled thread at every parallel operation; '
        'with `OMP_WAIT_POLICY=PASSIVE` it does not. The benchmark runs with '
        '`OMP_WAIT_POLICY=PASSIVE` unless it is set otherwise.\n',
        md_table(['who', 'method', *heads], rows),
        '',
    ]


def threads_note(records) -> str:
    """Which thread limit each group of results ran with."""
    groups = {}
    for r in records:
        key = 'ours' if r['who'] == OURS else 'peers'
        groups.setdefault(key, set()).add(r.get('threads', 2))
    parts = [
        f'{k}: {", ".join(map(str, sorted(v)))}' for k, v in sorted(groups.items())
    ]
    return 'Threads per library in these results: ' + '; '.join(parts) + '.'


def capture_section(records, sizes) -> list[str]:
    """Return the capture-range section (when capture cases were run)."""
    if not select(records, family='capture'):
        return []
    size = 512 if 512 in sizes else sizes[0]
    return [
        '## Capture range\n',
        'Rigid cases with rotation up to 30 deg and shift up to 20 % of S '
        '(the capture family above); per case at '
        f'{size}² (corner error in px):\n',
        capture_cases(records, size),
    ]


def graf_section(store) -> list[str]:
    """Return the graf section (when the graf pair was run)."""
    if not store.get('graf'):
        return []
    return [
        '## kornia homography tutorial: Oxford graf img1 -> img2\n',
        '800x640 pair, ground truth `H1to2p` (img1 (x, y) -> img2 (x, y)); ours is '
        "`register(fixed=img1, moving=img2, model='homography')` on gray images, "
        'whose `moving_from_fixed` is H1to2 in (row, col). kornia follows the '
        'tutorial: '
        '`register(src=img1, dst=img2)` on RGB returns img1_from_img2 (normalised), '
        "inverted here. Corner error over img1's corners + centre; mean L1 = mean "
        'absolute difference (RGB, [0, 1], whole 800x640 frame, zeros outside) between '
        "img1 warped into img2's frame by the estimate and by the truth (the tutorial "
        'printed 0.0053; PEERS.md measured 0.0063 for kornia in 25.8 s and ECC 6 '
        'levels 0.93 px in 0.59 s).\n',
        graf_table(store['graf']),
        '',
    ]


#: Sections measured by suites outside this document's run, kept as they
#: wrote them in benchmarks/results (bench_init.py: global initialisation;
#: bench_geo.py: georeferenced rasters against AROSICS).
INCLUDED = ('init.md', 'geo.md')


def included_sections() -> list[str]:
    """Return the sections of ``INCLUDED`` found in benchmarks/results, verbatim."""
    paths = [RESULTS / name for name in INCLUDED]
    return [path.read_text().rstrip('\n') + '\n' for path in paths if path.exists()]


def memory_section(store) -> list[str]:
    """Return the memory section (when the memory check was run)."""
    if not store.get('memory'):
        return []
    return [
        '## Memory\n',
        'Peak RSS (`VmHWM` of `/proc/self/status`) of a fresh Python '
        'process that imports torch and napari_coreg, loads a rigidly moved pair '
        'of the camera image resized to the given size (float32, 64 MiB each at '
        '4096²) and registers it once with our engine (CPU; default settings). '
        'Target (issue 11): < 1.2 GB at 4096².\n',
        memory_table(store['memory']),
        '',
    ]


CASES_DOC = """\
Cases (`napari_coreg.cases.benchmark_case`, deterministic, seeded per case):
scikit-image's camera, astronaut, coins, moon, cell, retina, immunohistochemistry
and coffee (colour -> gray), case *i* uses image *i* mod 8; with fewer than 8 cases the
indices are spread over the 8 images. The fixed image is the central S x S crop
of the source (rescaled up, cubic, when its short side is below 2 S); the moving
image is the same scene under a random true transform about the crop centre,
rendered from the source (cubic spline), so its borders hold real content:
rotation U(-15, 15) deg and shift U(-8 %, 8 %) of S per axis (translation: shift
only); affine adds per-axis scale U(0.9, 1.1) and shear U(-0.1, 0.1); homography
moves the four corners by U(-6 %, 6 %) of S on top of the rigid part; *capture*
is rigid with rotation U(-30, 30) deg and shift U(-20 %, 20 %). Moving intensities
get a gamma U(0.7, 1.4); "multi" cases then remap them non-monotonically with
the fold x -> 0.5 - 0.5 cos(2 pi x) (0 at 0, 1 at 1/2, 0 at 1: dark and bright both
turn dark; global correlation with the fixed image about +0.3; see `benchmark_case` for
why not 0.5 + 0.5 cos(1.5 pi x), which is mostly an inversion); both images get
Gaussian noise sigma 0.02, clipped to [0, 1], float32.

Error = mean distance (px) between the 4 image corners and the centre mapped by
the estimated and by the true `moving_from_fixed` (projective divide); a failed
run (exception) counts as an infinite error ("fail"). Success: error < 0.5 px
(also shown: < 1 px, PEERS.md's criterion). Time: wall clock of the registration
call only (case generation excluded), median over the cases, after one untimed
warm-up call per method on a 128 px crop (imports, first-call costs).
Peer settings are those of PEERS.md (`../shared/PEERS.md`; see `benchmarks/peers.py`).
Our engine: `napari_coreg.register(fixed, moving, model=..., metric=...,
backend="torch")` with its defaults otherwise.
"""


# --------------------------------------------------------------------------
# the document


def run_note(group: str, info: dict) -> str:
    """One sentence on the latest run of a group of records."""
    command = info['command']
    if not command.split(' ')[0].endswith('.py'):  # runs stored before 2026-11-29
        command = f'run_all.py {command}'
    return (
        f'Latest run of {group}: {info["when"]}, `{command}`, '
        f'{info["threads"]} thread(s) per library, load average '
        f'{info["load"][0]:.1f} at the start and {info["load"][1]:.1f} at the end '
        f'(2 cores: other processes on the machine inflate wall times), '
        f'{info["seconds"]} s.'
    )


def _versions(store: dict) -> str:
    """The versions of the latest run that recorded them."""
    runs = [r for r in store.get('runs', {}).values() if r.get('versions')]
    if not runs:
        return 'Versions: not recorded with these results.'
    info = max(runs, key=lambda r: r['when'])['versions']
    return info['summary'] if 'summary' in info else versions_line(info)


def _cases_per_size(records: list[dict], sizes: list[int]) -> dict[int, int]:
    """The most cases any family has at each size."""
    out = {}
    for size in sizes:
        groups: dict[tuple, set] = {}
        for r in select(records, size=size):
            groups.setdefault((r['family'], r['modality']), set()).add(r['index'])
        out[size] = max((len(v) for v in groups.values()), default=0)
    return out


def write_markdown(
    store: dict[str, Any],
    *,
    command: str,
    names: set[str] | None = None,
    sizes: list[int] | None = None,
    reference: Path = REFERENCE,
) -> str:
    """The whole document from a store of records.

    Parameters
    ----------
    store : dict
        ``records``, ``graf``, ``memory``, ``thread_check`` and ``runs``.
    command : str
        The command line named as the document's writer.
    names : set of str, optional
        Only these cases (default: every stored case).
    sizes : list of int, optional
        Only these sizes (default: every stored size).
    reference : Path
        The peers' published figures.

    Returns
    -------
    str
        Markdown.
    """
    records = [r for r in store['records'] if names is None or r['case'] in names]
    sizes = sorted({r['size'] for r in records} if sizes is None else sizes)
    sizes = [s for s in sizes if select(records, size=s)]
    per_size = _cases_per_size(records, sizes)
    notes = [run_note(group, store['runs'][group]) for group in sorted(store['runs'])]
    out = [
        '# Benchmarks: napari-coreg vs SimpleITK, OpenCV ECC, kornia, pystackreg\n',
        f'Written by `{command}` '
        f'on {datetime.datetime.now():%Y-%m-%d %H:%M} (repository HEAD '
        f'{git_head()}); the notes below say which runs produced the results. '
        'Raw per-case results: `benchmarks/results/records.json`.\n',
        _versions(store) + '\n',
        'Cases per size: '
        + ', '.join(f'{s}²: {per_size[s]}' for s in sizes)
        + (
            ' (1024² uses fewer cases to keep the run under 20 minutes)'
            if 1024 in sizes and per_size[1024] < max(per_size.values())
            else ''
        )
        + '.\n',
    ]
    out += [f'> {n}\n' for n in [*notes, threads_note(records)]]
    out += report_targets.section(store.get('targets'), report_targets.load_gpu())
    out += [
        '## Peers: measured vs PEERS.md\n',
        'Cells: successes (< 1 px) / n, median error (px), median time (s); '
        "in brackets PEERS.md's figures (successes of 8, error, time).\n",
        peers_vs_reference(records, sizes, reference),
        '',
    ]
    out += ['## Results per case family\n']
    for family, modality in sorted({(r['family'], r['modality']) for r in records}):
        out += [
            f'### {family} / {modality}\n',
            family_table(records, family, modality, sizes),
        ]
        ratios = ratio_table(records, family, modality, sizes)
        if ratios:
            out += [
                "Our median time / the peer's median time, per size: wall clock "
                '(CPU time in brackets):\n',
                ratios,
            ]
    out += capture_section(records, sizes)
    out += graf_section(store)
    out += included_sections()
    out += memory_section(store)
    out += thread_section(store)
    out += [
        '## Our engine: cases above 0.5 px\n',
        ours_failures(records),
        '',
        '## How the cases are made\n',
        CASES_DOC,
    ]
    return '\n'.join(out)


def main(argv: list[str] | None = None) -> None:
    """Rewrite the document from the stored records."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--store', type=Path, default=STORE)
    ap.add_argument('--out', type=Path, default=DOCUMENT)
    args = ap.parse_args(argv)
    store = load(args.store, {'records': [], 'runs': {}})
    command = ' '.join(['python benchmarks/report.py', *(argv or sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(write_markdown(store, command=command))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
