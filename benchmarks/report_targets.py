"""The speed-targets section of docs/benchmarks.md (issue 11), from stored records.

:data:`TARGETS` lists the rows with their thresholds; :func:`section` turns
the measurements of :mod:`bench_targets` (``records.json``, key
``targets``) and the GPU figures of ``benchmarks/gpu.py``
(``results/gpu.json``) into markdown: per row ours, the peer, the ratio, the
target, whether it is met, the errors, and for every time row not met a
profile of where our time goes. Runs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from report_tables import md_table

GPU_STORE = harness.RESULTS / 'gpu.json'
REFERENCES = ('first', 'previous')
OURS_STACK = 'napari-coreg rigid NCC'
PEER_STACK = 'pystackreg RIGID_BODY'
BRAIN_T1 = 'BrainT1SliceBorder20.png'
BRAIN_PD = 'BrainProtonDensitySliceShifted13x17y.png'
#: GB as the targets state them (10^9 bytes), in MiB.
GB = 1e9 / 2**20
BRAIN_TOLERANCE_PX = 0.05


def _row(**cells: Any) -> dict[str, Any]:
    """One table row: ``title``, ``ours``, ``peer``, ``ratio`` and
    ``cpu_ratio`` (wall and CPU time, float or None), ``target``, ``met``
    (bool or None: not measured), ``errors``, ``profile`` (the key of the
    profile that explains a miss, or None), ``explain`` (a paragraph that
    explains a miss, or None)."""
    row = dict.fromkeys(
        ('ours', 'peer', 'ratio', 'cpu_ratio', 'errors', 'profile', 'explain')
    )
    row['met'] = None
    return {**row, **cells}


def _failed(title: str, target: str, got: dict[str, Any] | None) -> dict[str, Any]:
    why = 'not run' if not got else f'failed: {got.get("error", "?")[:80]}'
    return _row(title=title, target=target, ours=why)


def _ms(seconds: float) -> str:
    return f'{seconds * 1e3:.0f} ms' if seconds < 10 else f'{seconds:.1f} s'


# --------------------------------------------------------------------------
# the rows


def _pair_row(family: str, metric: str, peer: str, limit: float):
    def row(m: dict[str, Any]) -> list[dict[str, Any]]:
        size = m.get('size', 512)
        title = f'{size}² {family} + {metric.upper()} vs {peer}'
        target = f'≤ {limit:g}×, error ≤ peer'
        found = [
            r
            for r in m.get('pairs', {}).get('rows', [])
            if r['case'].endswith(f'{family} + {metric}')
        ]
        if not found:
            return [_failed(title, target, m.get('pairs'))]
        r = found[0]
        ratio = r['ratio_median']
        better = r['error_ours_median'] <= r['error_peer_median']
        return [
            _row(
                title=title,
                ours=f'{r["ours_ms_median"]:.0f} ms',
                peer=f'{r["peer_ms_median"]:.0f} ms',
                ratio=ratio,
                target=target,
                met=ratio <= limit and better,
                errors=f'{r["error_ours_median"]:.3f} vs {r["error_peer_median"]:.3f} '
                f'px (median of {r["cases"]}'
                + (
                    f'; the peer failed {r["peer_failures"]}: ratio over the others)'
                    if r.get('peer_failures')
                    else ')'
                ),
                profile=None if ratio <= limit else f'pair:{family}+{metric}',
            )
        ]

    return row


def _brain_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    got = m.get('brain')
    title = 'ITK brain T1 → shifted PD, MI'
    target = f'error < {BRAIN_TOLERANCE_PX} px'
    if not got or 'error' in got:
        return [_failed(title, target, got)]
    rows = []
    for model in ('translation', 'rigid'):
        r = got[model]
        rows.append(
            _row(
                title=f'{title}, ours {model} (SimpleITK Euler2D, full sampling)',
                ours=_ms(r['ours_s']),
                peer=_ms(r['peer_s']),
                ratio=r['ours_s'] / r['peer_s'],
                target=target,
                met=r['error_ours_px'] < BRAIN_TOLERANCE_PX,
                errors=f'{r["error_ours_px"]:.3f} vs {r["error_peer_px"]:.3f} px',
            )
        )
    return rows


def _stack_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    records = {r['name']: r for r in m.get('stack', [])}
    rows = []
    for reference in REFERENCES:
        ours = records.get(f'{OURS_STACK}, {reference}', {})
        peer = records.get(f'{PEER_STACK}, {reference}', {})
        frames, size = ours.get('frames', '?'), ours.get('size', '?')
        title = f'{frames} × {size}² rigid drift stack, reference "{reference}"'
        target = '≤ 0.25×, worst frame ≤ 0.1 px'
        if 'seconds' not in ours or 'seconds' not in peer:
            rows.append(_failed(title, target, ours if 'error' in ours else peer))
            continue
        per_frame = [1e3 * r['seconds'] / (r['frames'] - 1) for r in (ours, peer)]
        ratio = ours['seconds'] / peer['seconds']
        rows.append(
            _row(
                title=f'{title} vs pystackreg',
                cpu_ratio=ours['cpu_seconds'] / peer['cpu_seconds'],
                ours=f'{per_frame[0]:.0f} ms/frame',
                peer=f'{per_frame[1]:.0f} ms/frame',
                ratio=ratio,
                target=target,
                met=ratio <= 0.25 and ours['chain_max'] <= 0.1,
                errors=f'worst frame {ours["chain_max"]:.3f} vs '
                f'{peer["chain_max"]:.3f} px (median {ours["chain_median"]:.3f} vs '
                f'{peer["chain_median"]:.3f})',
                profile=None if ratio <= 0.25 else f'stack:{reference}',
            )
        )
    return rows


def _volume_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    got = m.get('volume')
    size = (got or {}).get('size', 128)
    plans = (
        (
            'torch',
            f'3D rigid + MI at {size}³ vs SimpleITK (25 % sampling, 3 levels)',
            0.5,
        ),
        ('sitk backend', f'our SimpleITK backend vs SimpleITK by hand, {size}³', 1.2),
    )
    rows = []
    for name, title, limit in plans:
        target = f'≤ {limit:g}×'
        if not got or 'error' in got:
            rows.append(_failed(title, target, got))
            continue
        ours, hand = got[name], got['by hand']
        ratio = ours['seconds'] / hand['seconds']
        rows.append(
            _row(
                title=title,
                cpu_ratio=ours['cpu_seconds'] / hand['cpu_seconds'],
                ours=_ms(ours['seconds']),
                peer=_ms(hand['seconds']),
                ratio=ratio,
                target=target,
                met=ratio <= limit,
                errors=f'{ours["error_mm"]:.2f} vs {hand["error_mm"]:.2f} mm',
                profile=None if ratio <= limit else f'volume:{name.split()[0]}',
            )
        )
    return rows


def _sitk_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in m.get('sitk', {}).get('rows', []):
        unit = 'mm' if 'error_ours_mm' in r else 'px'
        rows.append(
            _row(
                title=f'our SimpleITK backend vs SimpleITK by hand, {r["case"]}',
                ours=_ms(r['ours_s']),
                peer=_ms(r['by_hand_s']),
                ratio=r['ratio'],
                target='≤ 1.2×',
                met=r['ratio'] <= 1.2,
                errors=f'{r[f"error_ours_{unit}"]:.3f} vs '
                f'{r[f"error_by_hand_{unit}"]:.3f} {unit}',
            )
        )
    return rows


def _gb(mib: float) -> str:
    return f'{mib * 2**20 / 1e9:.2f} GB'


def _memory_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in m.get('pair_memory', []):
        title = f'{r["size"]}² pair, {r["model"]} + {r["metric"]}: peak RSS'
        errors = f'{r["error_px"]:.3f} px' if 'error_px' in r else '-'
        rows.append(_memory_row(title, 1.2, r, errors))
    got = m.get('volume_memory')
    if got:
        title = f'{got["size"]}³ float32 volume pair, rigid + MI: peak RSS'
        rows.append(_memory_row(title, 6.0, got, '(2 iterations per level)'))
    return rows


def _memory_row(title: str, limit_gb: float, got: dict, errors: str) -> dict:
    target = f'< {limit_gb:g} GB'
    peak = got.get('memory', {}).get('peak_rss_mib')
    if peak is None:
        return _failed(title, target, got)
    before = got['memory'].get('rss_before_mib') or 0.0
    met = peak < limit_gb * GB
    return _row(
        title=title,
        ours=f'{_gb(peak)} ({_gb(before)} before)',
        peer='-',
        target=target,
        met=met,
        errors=errors,
        explain=None if met else memory_text(title, got),
    )


def memory_text(title: str, got: dict[str, Any]) -> str:
    """One paragraph: the peak RSS so far when each pyramid level started."""
    memory, shapes = got['memory'], got.get('level_shapes', [])
    steps = ', '.join(
        f'level {level} ({"×".join(map(str, shapes[int(level)]))}) {_gb(hwm)}'
        for level, hwm in got.get('hwm_by_level', [])
        if hwm is not None and int(level) < len(shapes)
    )
    return (
        f'- **{title}**: {_gb(memory.get("rss_before_mib") or 0.0)} before the '
        'registration (interpreter, libraries and the loaded pair); peak so far '
        f'when each level took its first step: {steps or "not recorded"}; '
        f'peak at the end {_gb(memory["peak_rss_mib"])} '
        f'({got.get("seconds", float("nan")):.0f} s).'
    )


def _gpu_rows(gpu: dict[str, Any] | None) -> list[dict[str, Any]]:
    plans = (
        ('GPU: 512² affine pairs per second, batched', '≥ 1000 /s'),
        ('GPU: 128³ rigid MI registration', '< 0.2 s'),
    )
    if not gpu:
        return [_row(title=t, target=g, ours='no GPU run') for t, g in plans]
    pairs, volume = gpu['pairs'], gpu['volume_rigid_mi']
    return [
        _row(
            title=f'{plans[0][0]} ({gpu["device_name"]})',
            ours=f'{pairs["pairs_per_second"]:.0f} /s (batch {pairs["batch"]})',
            target=plans[0][1],
            met=pairs['pairs_per_second'] >= 1000,
            errors=f'median {pairs["corner_error_px_median"]:.3f} px, '
            f'max {pairs["corner_error_px_max"]:.3f} px',
        ),
        _row(
            title=f'{plans[1][0]} ({gpu["device_name"]})',
            ours=_ms(volume['seconds']),
            target=plans[1][1],
            met=volume['seconds'] < 0.2,
            errors=f'{volume["corner_error_px"]:.3f} px',
        ),
    ]


#: The rows of issue 11's targets, in its order: functions of the measurements.
TARGETS: tuple[Callable[[dict[str, Any]], list[dict[str, Any]]], ...] = (
    _pair_row('affine', 'ncc', 'OpenCV ECC (3 levels)', 1.5),
    _pair_row('rigid', 'ncc', 'OpenCV ECC (3 levels)', 1.5),
    _pair_row('homography', 'ncc', 'OpenCV ECC (3 levels)', 1.0),
    _pair_row('affine', 'mi', 'SimpleITK (25 % sampling, 4 levels)', 0.25),
    _brain_rows,
    _stack_rows,
    _volume_rows,
    _sitk_rows,
    _memory_rows,
)


def rows(measured: dict[str, Any], gpu: dict[str, Any] | None = None) -> list[dict]:
    """Every row of :data:`TARGETS` (then the GPU rows) from the measurements."""
    out = [r for target in TARGETS for r in target(measured)]
    return out + _gpu_rows(gpu)


def to_profile(measured: dict[str, Any]) -> list[str]:
    """Keys of the profiles that explain the time rows not met."""
    return list(dict.fromkeys(r['profile'] for r in rows(measured) if r['profile']))


def load_gpu(path: Path = GPU_STORE) -> dict[str, Any] | None:
    """The figures of a CUDA run of ``benchmarks/gpu.py``, or None."""
    if not path.exists():
        return None
    gpu = json.loads(path.read_text())
    if gpu.get('quick') or not str(gpu.get('device', '')).startswith('cuda'):
        return None
    return gpu


# --------------------------------------------------------------------------
# markdown


def _met(value: bool | None) -> str:
    return {True: 'met', False: '**not met**', None: '-'}[value]


def _ratio_cell(wall: float | None, cpu: float | None) -> str:
    if wall is None:
        return '-'
    text = f'{wall:.3f}×' if wall < 1 else f'{wall:.2f}×'
    return text if cpu is None else f'{text} ({cpu:.2f}×)'


def target_table(table_rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    return md_table(
        [
            'row',
            'ours',
            'peer',
            'ours / peer: wall (CPU)',
            'target',
            'met',
            'errors: ours vs peer',
        ],
        [
            [
                r['title'],
                r['ours'] or '-',
                r['peer'] or '-',
                _ratio_cell(r['ratio'], r['cpu_ratio']),
                r['target'],
                _met(r['met']),
                r['errors'] or '-',
            ]
            for r in table_rows
        ],
    )


def profile_text(title: str, prof: dict[str, Any]) -> str:
    """One paragraph: the phases and the functions with the most own time."""
    if 'error' in prof:
        return f'- **{title}**: profile failed ({prof["error"][:80]}).'
    total = prof['total_ms']
    phases = '; '.join(
        f'{name.strip()} {ms:.0f} ms ({100 * ms / total:.0f} %)'
        for name, ms in prof['phases']
    )
    top = ', '.join(
        f'`{name}` {ms:.0f} ms ({100 * ms / total:.0f} %)' for name, ms in prof['top']
    )
    return (
        f'- **{title}**: {total:.0f} ms under cProfile. Phases (cumulative): '
        f'{phases or "none of bench_speed.PHASES found"}. Most own time: {top}.'
    )


def _gpu_note(gpu: dict[str, Any] | None) -> str:
    if gpu is None:
        return (
            'GPU: no GPU run was possible in this session (no CUDA device here). '
            '`PYTHONPATH=src python benchmarks/gpu.py` on a CUDA machine writes '
            '`benchmarks/results/gpu.json`, and this section reads it.'
        )
    run = gpu.get('run', {})
    stack = gpu['stack']
    return (
        f'GPU: {gpu["device_name"]}, torch {gpu["torch"]}, run {run.get("when", "?")} '
        f'(commit {run.get("versions", {}).get("commit", "?")}): CUDA tests '
        f'{gpu["tests"].get("summary", gpu["tests"].get("why", "-"))}; '
        f'{stack["frames"]} × {stack["size"]}² rigid stack '
        f'{stack["ms_per_frame"]:.1f} ms/frame (worst frame '
        f'{stack["corner_error_px_max"]:.3f} px).'
    )


def section(targets: dict[str, Any] | None, gpu: dict[str, Any] | None) -> list[str]:
    """The speed-targets section (lines) from ``store['targets']`` and the GPU run."""
    head = ['## Speed targets (issue 11)\n']
    if not targets:
        return [*head, 'Not measured yet: `make bench-speed`.\n']
    run, settings, measured = targets['run'], targets['settings'], targets['measured']
    table_rows = rows(measured, gpu)
    profiles = measured.get('profiles', {})
    explained = [
        profile_text(r['title'], profiles[r['profile']])
        for r in table_rows
        if r['profile'] in profiles
    ]
    memory = [r['explain'] for r in table_rows if r['explain']]
    out = [
        *head,
        f'Measured in one run by `python benchmarks/{run["command"]}` on '
        f'{run["when"]} (commit {run["versions"].get("commit", "?")}), '
        f'{run["threads"]} threads per library, OMP_WAIT_POLICY '
        f'{run["omp_wait_policy"]}, {run["seconds"]} s; load average '
        f'{run["load"][0]:.1f} at the start and {run["load"][1]:.1f} at the end '
        f'on {run["versions"].get("cores", "?")} cores (a load above the core '
        'count slows both sides, not their ratio, but makes it noisy). '
        f'{harness.versions_line(run["versions"])}\n',
        f'2D pairs: {settings["cases"]} cases per row (`napari_coreg.cases.'
        'benchmark_case`), ours and the peer alternately in one process after a '
        f'warm-up, {settings["repeats"]} timed runs each; the ratio is the median '
        'over cases of the ratio of medians. Stacks: each method once in its own '
        'process, one after the other; worst frame = the largest corner error '
        'against frame 0. Volumes: ours, our SimpleITK backend and SimpleITK by '
        f'hand in turn in one process, {settings["repeats"]} runs each, medians. '
        'Peak memory: `VmHWM` of a fresh process that loads the pair and '
        'registers it (interpreter and libraries included).'
        + (
            " **Quick (smoke) settings: not the targets' sizes.**"
            if settings.get('quick')
            else ''
        )
        + '\n',
        target_table(table_rows),
    ]
    if explained:
        out += [
            '### Where our time goes (rows not met)\n',
            'Our side of each time row not met, once under cProfile after a '
            f'warm-up (stacks: {settings["profile_frames"]} frames). Phases are '
            'cumulative and nest; "most own time" names the Python functions and '
            'torch/numpy operations where the time is spent.\n',
            '\n'.join(explained) + '\n',
        ]
    if memory:
        out += [
            '### Where our memory goes (rows not met)\n',
            '\n'.join(memory) + '\n',
        ]
    return [*out, _gpu_note(gpu) + '\n']
