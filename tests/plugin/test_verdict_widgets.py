"""The widgets act on a result's verdict (issue 9): never apply a failure silently.

Results are stubbed with the verdict contract (``verdict``,
``verdict_reasons``; ``StackResult.verdicts``, ``flagged_frames``) so these
tests hold before and after the core computes verdicts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from napari_coreg._napari import _widget
from napari_coreg._napari._records import METADATA_KEY
from napari_coreg._napari._verdict import VERDICT_COLOURS, sparkline
from napari_coreg._napari._widget import RegistrationWidget
from napari_coreg._napari._writeback import Outcome
from napari_coreg.quality import hold_reasons
from napari_coreg.result import Progress


class Judged:
    """A result with a verdict: every other attribute is the wrapped result's."""

    def __init__(self, result, verdict, reasons=()):
        self._result = result
        self.verdict = verdict
        self.verdict_reasons = tuple(reasons)
        self.uncertainty_px = None

    def __getattr__(self, name):
        return getattr(self._result, name)


def shown(widget) -> bool:
    """Not hidden by the widget (``visible`` is False while the window is not shown)."""
    return not widget.native.isHidden()


def smooth(seed, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)


@pytest.fixture
def notes(monkeypatch):
    shown = []
    monkeypatch.setattr(
        'napari.utils.notifications.show_warning', lambda message: shown.append(message)
    )
    return shown


def run_with(
    viewer, qtbot, monkeypatch, helpers, verdict, before=0.5, after=0.9, points=None
):
    """Register with a stubbed run that returns a shift of (2, -1) px."""

    def fake_run(request):
        yield Progress(0, 1, 0, 1, 0, 0.5)
        shift = np.eye(3)
        shift[:2, 2] = [2.0, -1.0]
        result = helpers.fake_result(shift, request.fixed.grid, request.moving.grid)
        result = dataclasses.replace(result, metric_before=before, metric_after=after)
        result = helpers.with_verdict(result)
        reasons = {'ok': (), 'suspect': ('weak overlap',), 'failed': ('no match',)}
        if verdict is not None:
            result = Judged(result, verdict, reasons[verdict])
        return Outcome(result, None)

    monkeypatch.setattr(_widget, 'run_request', fake_run)
    f = viewer.add_image(smooth(0), name='fixed')
    m = viewer.add_image(smooth(1), name='moving')
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register images')
    widget._fixed.value, widget._moving.value = f, m
    if points is not None:
        widget._fixed_points.value, widget._moving_points.value = points
    widget._start()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert widget.last_error is None, widget.last_error
    return widget, m


def test_failed_result_is_held_until_apply_anyway(
    make_napari_viewer, qtbot, monkeypatch, helpers, notes
):
    viewer = make_napari_viewer()
    widget, m = run_with(viewer, qtbot, monkeypatch, helpers, 'failed')
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))
    assert METADATA_KEY not in m.metadata
    assert widget._status.value.startswith('Not applied')
    assert 'no match' in widget._verdict.value
    assert VERDICT_COLOURS['failed'] in widget._verdict.value
    assert shown(widget._apply_anyway) and notes
    widget._apply_anyway.clicked.emit()
    assert m.affine.affine_matrix[0, 2] == pytest.approx(-2.0)
    assert widget._status.value.startswith('Done') and 'applied anyway' in (
        widget._status.value
    )
    assert not shown(widget._apply_anyway)
    assert widget._undo.enabled


def test_worse_metric_is_held(make_napari_viewer, qtbot, monkeypatch, helpers):
    viewer = make_napari_viewer()
    widget, m = run_with(
        viewer, qtbot, monkeypatch, helpers, None, before=0.8, after=0.3
    )
    np.testing.assert_array_equal(m.affine.affine_matrix, np.eye(3))
    assert 'NCC got worse' in widget._verdict.value
    assert shown(widget._apply_anyway)


def test_suspect_result_is_written_with_a_warning(
    make_napari_viewer, qtbot, monkeypatch, helpers, notes
):
    viewer = make_napari_viewer()
    widget, m = run_with(viewer, qtbot, monkeypatch, helpers, 'suspect')
    assert m.affine.affine_matrix[0, 2] == pytest.approx(-2.0)
    assert widget._status.value.startswith('Done')
    assert VERDICT_COLOURS['suspect'] in widget._verdict.value
    assert 'weak overlap' in widget._verdict.value and shown(widget._verdict)
    assert not shown(widget._apply_anyway)
    assert any('may be wrong' in note for note in notes)


def test_ok_result_is_written_and_shown_green(
    make_napari_viewer, qtbot, monkeypatch, helpers, notes
):
    viewer = make_napari_viewer()
    widget, m = run_with(viewer, qtbot, monkeypatch, helpers, 'ok')
    assert m.affine.affine_matrix[0, 2] == pytest.approx(-2.0)
    assert VERDICT_COLOURS['ok'] in widget._verdict.value
    assert not notes
    # a small convergence plot of the loss per level
    assert 'Loss per level: ' + sparkline((0.5, 0.2, 0.01)) in widget._verdict.value


def test_sparkline_draws_high_values_tall():
    assert sparkline([3.0, 2.0, 1.0]) == '\u2588\u2585\u2581'
    assert len(sparkline(range(100), width=10)) == 10
    assert sparkline([float('nan')]) == ''


@pytest.mark.parametrize(
    ('metric', 'before', 'after', 'held'),
    [
        ('ncc', 0.5, 0.9, False),
        ('ncc', 0.9, 0.5, True),
        ('mi', 0.2, 0.1, True),
        ('mse', 10.0, 2.0, False),
        ('l1', 2.0, 3.0, True),
        ('ncc', float('nan'), 0.5, False),
    ],
)
def test_hold_reasons_follow_the_metric_direction(metric, before, after, held, helpers):
    from napari_coreg.transforms import Grid

    result = helpers.fake_result(np.eye(3), Grid((4, 4)), Grid((4, 4)))
    result = dataclasses.replace(
        result, metric=metric, metric_before=before, metric_after=after
    )
    result = helpers.with_verdict(result)
    assert bool(hold_reasons(result)) is held


def test_landmark_residuals_join_the_verdict(
    make_napari_viewer, qtbot, monkeypatch, helpers
):
    """Issue 9: paired Points layers; their residual is in the verdict."""
    viewer = make_napari_viewer()
    clicked = np.array([[5.0, 6.0], [30.0, 12.0], [20.0, 40.0]])
    fixed_points = viewer.add_points(clicked, name='fixed landmarks')
    # the same structures on the moving image: shifted by (2, -1), one 3 px off
    moving_clicked = clicked + [2.0, -1.0]
    moving_clicked[2, 0] += 3.0
    moving_points = viewer.add_points(moving_clicked, name='moving landmarks')
    widget, m = run_with(
        viewer,
        qtbot,
        monkeypatch,
        helpers,
        'ok',
        points=(fixed_points, moving_points),
    )
    assert 'landmarks: mean residual 1, largest 3 (world units, 3 pairs)' in (
        widget._verdict.value
    )


def test_unpaired_landmarks_are_refused_before_work(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(smooth(0), name='fixed')
    viewer.add_image(smooth(1), name='moving')
    a = viewer.add_points(np.zeros((3, 2)), name='a')
    b = viewer.add_points(np.zeros((2, 2)), name='b')
    widget = RegistrationWidget(viewer)
    viewer.window.add_dock_widget(widget, name='Register images')
    widget._fixed_points.value, widget._moving_points.value = a, b
    widget._start()
    assert not widget.running and 'same order' in widget.last_error
    widget._moving_points.value = None
    widget._start()
    assert not widget.running and 'both the fixed and the moving' in widget.last_error
