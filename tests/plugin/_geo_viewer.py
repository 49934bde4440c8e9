"""Helpers of the georeferenced-raster tests in a real viewer: drop files on
the canvas, answer napari's reader dialog, footprints in world coordinates."""

from __future__ import annotations

import numpy as np

REF = 'ref_S2A_20160608T153121_T33UUU_sub.jp2'
TGT = 'tgt_S2A_20160529T153631_T33UUU_sub.jp2'


def drop(viewer, paths) -> None:
    """Drop files on the viewer's canvas, as a file manager does."""
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    viewer.window._qt_viewer.dropEvent(event)


class DialogAnswers:
    """Answers napari's 'Choose reader' dialog: pick a reader, maybe remember."""

    def __init__(self, monkeypatch, choice='napari-coreg', remember=True):
        from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

        self.offered: list[list[str]] = []

        def exec_(dialog):
            buttons = dialog.reader_btn_group.buttons()
            self.offered.append(sorted(b.text() for b in buttons))
            next(b for b in buttons if b.text() == choice).setChecked(True)
            dialog.persist_checkbox.setChecked(remember)
            return 1

        monkeypatch.setattr(QtReaderDialog, 'exec_', exec_)


def world_box(layer) -> np.ndarray:
    """``[[y_min, x_min], [y_max, x_max]]`` of a layer's pixel footprint."""
    rows, cols = layer.data.shape
    corners = [
        (-0.5, -0.5),
        (-0.5, cols - 0.5),
        (rows - 0.5, -0.5),
        (rows - 0.5, cols - 0.5),
    ]
    world = np.array([layer.data_to_world(c) for c in corners])
    return np.array([world.min(axis=0), world.max(axis=0)])
