"""Markdown tables of benchmark records: statistics, formats and one table per view.

Records are the dicts the suites store (``benchmarks/results/records.json``):
``who``, ``method``, ``family``, ``modality``, ``size``, ``case``, ``err``
(corner error, px; ``inf`` for a failure), ``time`` and ``cpu`` (s), ...
"""

from __future__ import annotations

import numpy as np

OURS = 'ours'
OK_STRICT, OK_LOOSE = 0.5, 1.0


def summary_line(recs: list[dict]) -> str:
    """One log line: successes, median error and time of some records."""
    s = stats(recs)
    return (
        f'ok<0.5 {s["ok05"]}/{s["n"]}  ok<1 {s["ok1"]}/{s["n"]}  '
        f'med err {fmt_err(s["err"])} px  med time {s["time"]:.3f} s'
    )


# --------------------------------------------------------------------------
# statistics and markdown


def stats(recs: list[dict]) -> dict:
    """Count, successes (< 0.5 px, < 1 px) and medians of error, time, CPU."""
    errs = np.array([r['err'] for r in recs], float)
    times = np.array([r['time'] for r in recs], float)
    cpu = np.array([r.get('cpu', np.nan) for r in recs], float)
    return {
        'cpu': float(np.median(cpu)) if len(cpu) else float('nan'),
        'n': len(recs),
        'ok05': int((errs < OK_STRICT).sum()),
        'ok1': int((errs < OK_LOOSE).sum()),
        'err': float(np.median(errs)) if len(errs) else float('nan'),
        'time': float(np.median(times)) if len(times) else float('nan'),
    }


def fmt_err(x: float) -> str:
    """Format an error in px (``fail`` when infinite)."""
    if not np.isfinite(x):
        return 'fail'
    return f'{x:.3f}' if x < 10 else f'{x:.0f}'


def fmt_time(x: float) -> str:
    """Format seconds (``-`` when unknown)."""
    if not np.isfinite(x):
        return '-'
    return f'{x:.3f}' if x < 10 else f'{x:.1f}'


def fmt_ratio(x: float) -> str:
    """Format a ratio (``-`` when unknown)."""
    return '-' if not np.isfinite(x) else (f'{x:.2f}' if x < 10 else f'{x:.0f}')


def md_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table."""
    lines = ['| ' + ' | '.join(map(str, headers)) + ' |', '|' + '---|' * len(headers)]
    lines += ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]
    return '\n'.join(lines) + '\n'


def select(records, **kw) -> list[dict]:
    """Return the records whose fields equal the keywords."""
    return [r for r in records if all(r[k] == v for k, v in kw.items())]


def methods_of(records, family, modality) -> list[tuple[str, str]]:
    """(who, method) pairs present, ours first, in first-seen order."""
    seen = dict.fromkeys(
        (r['who'], r['method'])
        for r in select(records, family=family, modality=modality)
    )
    return sorted(seen, key=lambda k: k[0] != OURS)


def family_table(records, family, modality, sizes) -> str:
    """Return the table of one family and modality: a row per size and method."""
    rows = []
    for size in sizes:
        for who, method in methods_of(records, family, modality):
            recs = select(
                records,
                family=family,
                modality=modality,
                size=size,
                who=who,
                method=method,
            )
            if not recs:
                continue
            s = stats(recs)
            rows.append(
                [
                    size,
                    f'**{who}**' if who == OURS else who,
                    method,
                    s['n'],
                    s['ok05'],
                    s['ok1'],
                    fmt_err(s['err']),
                    fmt_time(s['time']),
                    fmt_time(s['cpu']),
                ]
            )
    return md_table(
        [
            'size',
            'who',
            'model (metric)',
            'n',
            'ok < 0.5 px',
            'ok < 1 px',
            'median err (px)',
            'median time (s)',
            'median CPU time (s)',
        ],
        rows,
    )


def median_of(records, field='time', **kw) -> float:
    """Return the median ``field`` of the records selected by the keywords."""
    recs = select(records, **kw)
    return stats(recs)[field] if recs else float('nan')


def ratio_table(records, family, modality, sizes) -> str:
    """Our median time / each peer's median time, one cell per size.

    Cells: wall-clock ratio, and in brackets the CPU-time ratio.
    """
    pairs = methods_of(records, family, modality)
    ours = [m for w, m in pairs if w == OURS]
    theirs = [(w, m) for w, m in pairs if w != OURS]
    if not ours or not theirs:
        return ''
    rows = []
    for who, method in theirs:
        row = [f'{who}: {method}']
        for mine in ours:
            cells = []
            for size in sizes:
                kw = {'family': family, 'modality': modality, 'size': size}
                r = [
                    median_of(records, f, who=OURS, method=mine, **kw)
                    / median_of(records, f, who=who, method=method, **kw)
                    for f in ('time', 'cpu')
                ]
                cells.append(f'{fmt_ratio(r[0])} ({fmt_ratio(r[1])})')
            row.append(' / '.join(cells))
        rows.append(row)
    head = ['peer \\ ours, per size ' + ' / '.join(map(str, sizes))] + ours
    return md_table(head, rows)


# --------------------------------------------------------------------------
# failures of our engine, per case


def ours_failures(records) -> str:
    """Return the table of our cases above 0.5 px."""
    bad = [r for r in records if r['who'] == OURS and not r['err'] < OK_STRICT]
    if not bad:
        return 'No case above 0.5 px.\n'
    rows = [
        [
            r['method'],
            r['case'],
            fmt_err(r['err']),
            fmt_time(r['time']),
            r.get('info', {}).get('stop_reason', ''),
            (r['error'] or '').replace('|', '/')[:120],
        ]
        for r in bad
    ]
    return md_table(
        ['ours', 'case', 'err (px)', 'time (s)', 'stop reason', 'exception'], rows
    )


def capture_cases(records, size) -> str:
    """Return the capture-range table: one row per case, a column per method."""
    recs = select(records, family='capture', size=size)
    methods = sorted(
        dict.fromkeys((r['who'], r['method']) for r in recs), key=lambda k: k[0] != OURS
    )
    names = list(dict.fromkeys(r['case'] for r in recs))
    rows = []
    for name in names:
        one = select(recs, case=name)
        p = one[0]['params']
        row = [name, f'{p["angle"]:.1f}', f'{np.hypot(*p["shift"]):.0f}']
        for who, method in methods:
            got = select(one, who=who, method=method)
            row.append(fmt_err(got[0]['err']) if got else '-')
        rows.append(row)
    return md_table(
        ['case', 'rotation (deg)', '|shift| (px)'] + [f'{w}: {m}' for w, m in methods],
        rows,
    )


def graf_table(recs) -> str:
    """Return the table of the graf pair: one row per method."""
    rows = [
        [
            r['who'],
            r['method'],
            fmt_err(r['err']),
            '-' if not np.isfinite(r['l1']) else f'{r["l1"]:.4f}',
            fmt_time(r['time']),
        ]
        for r in sorted(recs, key=lambda r: r['who'] != OURS)
    ]
    return md_table(
        ['who', 'settings', 'corner err (px)', 'mean L1 of warps', 'time (s)'], rows
    )


def memory_table(recs) -> str:
    """Return the table of the memory check: one row per setting."""
    rows = []
    for r in recs:
        kw = ', '.join(f'{k}={v}' for k, v in r['kw'].items())
        if 'error' in r:
            rows.append([f'{r["size"]}²', kw, '-', '-', '-', '-', r['error']])
            continue
        gb = r['peak_mb'] * 2**20 / 1e9
        verdict = 'PASS' if gb < 2.0 else 'FAIL'
        rows.append(
            [
                f'{r["size"]}²',
                kw,
                f'{r["peak_mb"]:.0f} MiB ({gb:.2f} GB)',
                f'{r["base_mb"]:.0f}',
                f'{r["peak_mb"] - r["base_mb"]:.0f}',
                fmt_time(r['time']),
                fmt_err(r['err']),
                verdict,
            ]
        )
    return md_table(
        [
            'pair',
            'register(...)',
            'peak RSS',
            'RSS before register, inputs loaded (MiB)',
            'growth during register (MiB)',
            'time (s)',
            'err (px)',
            'target < 2 GB (10^9 bytes)',
        ],
        rows,
    )
