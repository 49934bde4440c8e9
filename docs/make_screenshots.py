"""Make the screenshots of docs/napari.md.

Run: ``xvfb-run -a python docs/make_screenshots.py``.

Opens the rigid sample pair, registers it with the "Register images" widget
and saves the window before and after, plus the widget alone with its folded
sections open.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from napari.qt import get_qapp
from skimage.io import imsave

OUT = Path(__file__).resolve().parent / 'images'


def wait(widget, app, timeout=300.0):
    import time

    start = time.monotonic()
    while widget.running and time.monotonic() - start < timeout:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open_sample('napari-coreg', 'rigid_pair')
    _, widget = viewer.window.add_plugin_dock_widget('napari-coreg', 'Register images')
    app = get_qapp()
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    imsave(
        OUT / 'widget_before.png',
        viewer.screenshot(canvas_only=False, flash=False),
        check_contrast=False,
    )
    widget._start()
    wait(widget, app)
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    imsave(
        OUT / 'widget_after.png',
        viewer.screenshot(canvas_only=False, flash=False),
        check_contrast=False,
    )
    for box in (widget._pyramid_box, widget._masks_box, widget._advanced_box):
        box.toggle.value = True  # the folded sections, open
    for _ in range(20):
        app.processEvents()
    widget.native.grab().save(str(OUT / 'widget_panel.png'))
    print(widget._status.value)
    viewer.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
