"""Labelled benchmark of the verdict (issue 9): does it call failures failures?

Every run registers a pair and is labelled by its true corner error (mean
over the fixed image's corners and centre, moving pixels): a *success* below
0.5 px, a *failure* above 2 px (pairs without a truth - unrelated images,
noise - are failures); runs in between are reported but not scored.

Pairs: synthetic known-transform cases (``tests/core/_cases.py`` and
``benchmarks/cases.py``: every model, ncc / mi / mse, torch and SimpleITK,
2D and 3D), the real ITK brain and CT lung pairs (``../shared/data``), and
designed failures: unrelated image pairs, pure noise, tiny overlaps, starts
outside the capture range (identity start), flipped inputs, the wrong metric
for a multimodal pair, a 4x4 image.

Targets: >= 95% of failures called 'failed' or 'suspect'; <= 2% of
successes anything but 'ok'; on successes the error is below
``uncertainty_px`` in >= 90% of runs; the verdict adds <= 20% to a default
512^2 registration.

Run: ``PYTHONPATH=src python benchmarks/bench_verdict.py [--quick]``; writes
``benchmarks/results/verdict.json`` and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / 'tests' / 'core'), str(ROOT / 'src')]

import cases  # noqa: E402  (benchmarks/cases.py)
from verdict_runs import Run, holdout, runs  # noqa: E402

from napari_coreg import register  # noqa: E402
from napari_coreg.transforms import corner_error  # noqa: E402
from napari_coreg.warp import pixel_matrix  # noqa: E402

SUCCESS_PX, FAILURE_PX = 0.5, 2.0


# --------------------------------------------------------------------------
# scoring


def evaluate(run: Run) -> dict:
    """Register one run and record its error, verdict and evidence."""
    fixed, moving, truth, kwargs = run.make()
    kwargs = dict(kwargs)
    physical = kwargs.pop('physical_truth', False)
    model, metric = kwargs.pop('model'), kwargs.pop('metric')
    row = {'name': run.name, 'kind': run.kind}
    try:
        res = register(fixed, moving, model=model, metric=metric, **kwargs)
    except ValueError as error:  # refused up front: not a silent failure
        row.update(error=float('inf'), verdict='refused', refused=str(error))
        return row
    start = time.perf_counter()
    assessment = res.assessment
    row['verdict_s'] = time.perf_counter() - start
    row['register_s'] = res.elapsed
    if truth is None:
        error = float('inf')
    else:
        est = res.moving_from_fixed
        if physical:
            est = pixel_matrix(est, res.fixed_grid, res.moving_grid)
            truth = pixel_matrix(truth, res.fixed_grid, res.moving_grid)
        error = corner_error(est, truth, res.fixed_grid.shape)
    e = assessment.evidence
    row.update(
        error=float(error),
        verdict=assessment.verdict,
        uncertainty=assessment.uncertainty_px,
        reasons=list(assessment.reasons),
        z=e.z,
        mi_z=e.mi_z,
        mirror_z=e.mirror_z,
        mi_fraction=e.mi_fraction,
        overlap=e.overlap,
        step=e.curvature.step_px,
        stop=e.stop_reason,
    )
    return row


def label(row: dict) -> str | None:
    """'success', 'failure' or None (between the thresholds)."""
    if row['error'] < SUCCESS_PX:
        return 'success'
    if row['error'] > FAILURE_PX:
        return 'failure'
    return None


def summarise(rows: list[dict]) -> dict:
    """Confusion matrix, rates and coverage."""
    table = {
        lab: dict.fromkeys(('ok', 'suspect', 'failed', 'refused'), 0)
        for lab in ('success', 'failure', 'unscored')
    }
    for row in rows:
        table[label(row) or 'unscored'][row['verdict']] += 1
    successes = [r for r in rows if label(r) == 'success']
    failures = [r for r in rows if label(r) == 'failure']
    caught = sum(r['verdict'] != 'ok' for r in failures)
    false_alarms = sum(r['verdict'] != 'ok' for r in successes)
    covered = sum(
        r.get('uncertainty') is not None and r['error'] < r['uncertainty']
        for r in successes
    )
    n_s, n_f = max(len(successes), 1), max(len(failures), 1)
    return {
        'confusion': table,
        'failures_caught': caught / n_f,
        'successes_flagged': false_alarms / n_s,
        'coverage': covered / n_s,
        'median_uncertainty_success': float(
            np.median(
                [r['uncertainty'] for r in successes if r.get('uncertainty')]
                or [np.nan]
            )
        ),
        'n_success': len(successes),
        'n_failure': len(failures),
    }


def overhead(repeats: int = 3) -> dict:
    """Verdict time over the registration time, default settings, 512^2."""
    out = {}
    for family in ('affine', 'rigid'):
        c = cases.make_case(family, 'mono', 512, 1)
        model = 'affine' if family == 'affine' else 'rigid'
        register(c.fixed, c.moving, model=model)  # warm-up
        reg, ver = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            res = register(c.fixed, c.moving, model=model)
            reg.append(time.perf_counter() - start)
            start = time.perf_counter()
            res.assessment  # noqa: B018
            ver.append(time.perf_counter() - start)
        out[model] = {
            'register_s': float(np.median(reg)),
            'verdict_s': float(np.median(ver)),
            'percent': 100 * float(np.median(ver) / np.median(reg)),
        }
    return out


def markdown(summary: dict, cost: dict | None) -> str:
    """The tables for docs/benchmarks.md."""
    lines = [
        '| true label \\ verdict | ok | suspect | failed | refused |',
        '|---|---|---|---|---|',
    ]
    for lab, counts in summary['confusion'].items():
        lines.append(
            f'| {lab} | '
            + ' | '.join(str(counts[v]) for v in ('ok', 'suspect', 'failed', 'refused'))
            + ' |'
        )
    lines += [
        '',
        f'- failures (> {FAILURE_PX} px) called failed/suspect/refused: '
        f'{summary["failures_caught"]:.1%} of {summary["n_failure"]} (target >= 95%)',
        f'- successes (< {SUCCESS_PX} px) not called ok: '
        f'{summary["successes_flagged"]:.1%} of {summary["n_success"]} (target <= 2%)',
        f'- successes with error < uncertainty_px: {summary["coverage"]:.1%} '
        f'(target >= 90%); median uncertainty_px '
        f'{summary["median_uncertainty_success"]:.2f}',
    ]
    for model, c in (cost or {}).items():
        lines.append(
            f'- verdict cost, default {model} 512x512: {c["verdict_s"] * 1e3:.0f} ms '
            f'on {c["register_s"] * 1e3:.0f} ms of registration (+{c["percent"]:.0f}%)'
        )
    return '\n'.join(lines)


def main() -> None:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--no-overhead', action='store_true')
    parser.add_argument('--only', help='run only runs whose name contains this')
    parser.add_argument(
        '--holdout', action='store_true', help='the runs not used for tuning'
    )
    args = parser.parse_args()
    rows = []
    for run in holdout() if args.holdout else runs(args.quick):
        if args.only and args.only not in run.name:
            continue
        row = evaluate(run)
        rows.append(row)
        lab = label(row) or '-'
        print(
            f'{row["name"]:48s} {lab:8s} err {row["error"]:9.3f} '
            f'{row["verdict"]:8s} unc {row.get("uncertainty") or float("nan"):7.3f} '
            f'z {row.get("z", np.nan):6.1f} miz {row.get("mi_z", np.nan):6.1f} '
            f'step {row.get("step", np.nan):6.2f} '
            f'mir {row.get("mirror_z", np.nan):6.1f} '
            f'frac {row.get("mi_fraction", np.nan):5.2f}',
            flush=True,
        )
    summary = summarise(rows)
    cost = None if args.no_overhead else overhead()
    print(markdown(summary, cost))
    if args.only:
        return
    out = HERE / 'results' / f'verdict{"_holdout" if args.holdout else ""}.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {'summary': summary, 'overhead': cost, 'rows': rows}, indent=1, default=str
        )
    )


if __name__ == '__main__':
    main()
