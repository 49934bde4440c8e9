"""One runner for every dock widget that runs work: worker, progress, cancel, errors.

:class:`RunnerWidget` is the base of the *Register images* and *Register
stack* widgets. A subclass builds its controls, then calls :meth:`_launch`
with a generator function; the base runs it in a worker thread
(``napari.qt.threading.create_worker``) with a progress bar in napari's
activity dock, and guarantees what every run needs:

- *Cancel* stops the run at the next step; nothing is written;
- an error raised inside the run (any exception, ``RuntimeError`` from an
  engine included) is shown in the status line and as a notification, and
  the widget is ready again at once;
- the progress bar reaches 100 % when a run finishes;
- closing the dock or the viewer stops the worker thread;
- the controls named by :meth:`_locked_controls` are disabled while it runs.

A subclass reports through hooks: :meth:`_show_progress`,
:meth:`_progress_count`, :meth:`_on_done`, :meth:`_on_cancelled`,
:meth:`_on_run_error`.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Generator
from contextlib import suppress
from functools import partial
from typing import Any

from magicgui.widgets import Container, Label, PushButton

__all__ = ['RunnerWidget', 'WorkerFailed', 'friendly_message', 'guarded']


class WorkerFailed(Exception):
    """An error raised inside a run, carried out of the worker thread.

    superqt's worker swallows a ``RuntimeError`` (it takes it for a deleted
    Qt object) and then never reports the end of the run; every error of
    the run therefore travels as this type.
    """


#: Engine messages and what the user can do about them.
_HINTS = (
    (
        (
            'outside moving image buffer',
            'no overlap',
            'do not overlap',
            'sampled point',
        ),
        'the images do not overlap where the registration starts: place the '
        'layers so that they overlap, or choose "Start from: centres aligned"',
    ),
    (
        ('out of memory',),
        'not enough memory: register a smaller region, fewer levels or use the CPU',
    ),
)


def wrap(label: Label) -> None:
    """Let a label's text wrap over the panel's full width."""
    with suppress(AttributeError):
        native = label.native
        native.setWordWrap(True)
        policy = native.sizePolicy()
        policy.setHorizontalPolicy(type(policy).Policy.Expanding)
        native.setSizePolicy(policy)


def friendly_message(exc: BaseException) -> str:
    """One readable sentence for an error raised inside a run.

    Parameters
    ----------
    exc : BaseException
        The error.

    Returns
    -------
    str
        ITK's file/line noise dropped, a hint on what to do where one is
        known.
    """
    text = str(exc).strip() or type(exc).__name__
    if 'ITK ERROR' in text:  # drop ITK's file, line and object address
        text = text.rsplit('ITK ERROR', 1)[1]
        text = re.sub(r'^[:\s]*[\w:]+\(0x[0-9a-fA-F]+\):\s*', '', text).strip()
    lowered = text.lower()
    for needles, hint in _HINTS:
        if any(needle in lowered for needle in needles):
            return f'{text.rstrip(".")} - {hint}.'
    return text


def guarded(function: Callable[..., Any], *args: Any) -> Generator:
    """Run ``function(*args)``; raise its errors as :class:`WorkerFailed`.

    A generator function is driven step by step (its yields are the
    progress, and cancel takes effect at the next one); a plain function is
    called once. ``ValueError`` and ``TypeError`` (bad input, with their own
    clear message) pass unchanged; ``GeneratorExit`` (cancel) is not caught.
    """
    try:
        result = function(*args)
        if isinstance(result, Generator):
            result = yield from result
        return result
    except (ValueError, TypeError, WorkerFailed):
        raise
    except Exception as exc:
        raise WorkerFailed(friendly_message(exc)) from exc


class RunnerWidget(Container):
    """Base of the dock widgets that run work in a worker thread.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer the widget works on.
    run_text : str
        Text of the run button.
    failure_title : str
        Start of the error notification, e.g. ``'Registration failed'``.
    **kwargs
        Passed to :class:`magicgui.widgets.Container`.
    """

    def __init__(
        self, viewer, run_text: str, failure_title: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._viewer = viewer
        self._worker = None
        self._running = False
        self._run_live = False
        self._returned: Any = None
        self._closed = False
        self._docked = False
        self._handling = False
        self._pbar_text: str | None = None
        self._listening: list[tuple[Any, Callable]] = []
        self._failure_title = failure_title
        self.last_error: str | None = None
        #: ``(done, total)`` shown by the progress bar when the last run ended
        self.last_progress: tuple[int, int] | None = None
        self._run = PushButton(text=run_text)
        self._cancel = PushButton(text='Cancel', enabled=False)
        self._cancel.tooltip = (
            'Stop at the next step: nothing is written, every layer stays as it was.'
        )
        self._status = Label(value='')
        wrap(self._status)
        self._run.changed.connect(self._start)
        self._cancel.changed.connect(self._stop)
        self.native.destroyed.connect(partial(_close_ref, weakref.ref(self)))
        self.native_parent_changed.connect(self._on_parent_changed)

    # ------------------------------------------------------------ hooks

    def _start(self, event=None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _locked_controls(self) -> list:
        """Controls disabled while a run is in progress."""
        return []

    def _show_progress(self, value: Any) -> None:
        """Show one event yielded by the run (status, preview)."""

    def _progress_count(self, value: Any) -> tuple[int, int] | None:
        """``(done, total)`` of a yielded event, for the progress bar."""
        return None

    def _progress_description(self, value: Any) -> str | None:
        """New text of the progress bar, or ``None`` to keep it."""
        return None

    def _on_done(self, returned: Any) -> None:
        """The run finished with ``returned``: write it (GUI thread)."""

    def _on_cancelled(self) -> None:
        self._status.value = 'Cancelled: no layer was changed.'

    def _on_run_error(self, exc: Exception) -> None:
        """Undo what the run showed so far (e.g. a live preview)."""

    def _after_set_running(self) -> None:
        """Update what depends on whether a run is in progress."""

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        """Whether a run is in progress (for the UI and tests)."""
        return self._running

    def _launch(self, function: Callable[..., Any], *args: Any, desc: str) -> None:
        """Run ``function(*args)`` (a generator function or not) in a worker."""
        from napari.qt.threading import create_worker

        self.last_error, self._returned, self.last_progress = None, None, None
        self._pbar_text = None
        worker = create_worker(
            guarded, function, *args, _progress={'desc': desc}, _ignore_errors=True
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._run_live = True
        self._set_running(True)
        worker.start()

    def _stop(self, event=None) -> None:
        """Cancel: honoured at the next step; no layer is changed."""
        if self._worker is not None and self._running:
            self._status.value = 'Cancelling...'
            self._worker.quit()

    def _set_running(self, running: bool) -> None:
        self._running = running
        if self._closed:
            return
        self._run.enabled = not running
        self._cancel.enabled = running
        for widget in self._locked_controls():
            widget.enabled = not running
        self._after_set_running()

    def _pbar(self):
        return getattr(self._worker, 'pbar', None)

    def _on_yielded(self, value: Any) -> None:
        # updating napari's progress bar or a layer can process pending Qt
        # events, so this handler may be re-entered (even after `finished`):
        # a nested event is dropped, and the run must still be live
        if not self._run_live or self._closed or self._handling:
            return
        self._handling = True
        try:
            self._show_progress(value)
            self._update_pbar(value)
        finally:
            self._handling = False

    def _update_pbar(self, value: Any) -> None:
        pbar, count = self._pbar(), self._progress_count(value)
        if pbar is None or count is None or not self._run_live:
            return
        done, total = count
        if pbar.total != total:
            pbar.total = total
        text = self._progress_description(value)
        if text is not None and text != self._pbar_text:
            self._pbar_text = text
            pbar.set_description(text)
        if done > pbar.n:
            pbar.update(done - pbar.n)

    def _on_returned(self, returned: Any) -> None:
        self._returned = returned
        pbar = self._pbar()
        if pbar is not None and pbar.total:
            if pbar.n < pbar.total:
                pbar.update(pbar.total - pbar.n)
            self.last_progress = (int(pbar.n), int(pbar.total))

    def _on_errored(self, exc: Exception) -> None:
        self._run_live = False
        if self._closed:
            return
        self._on_run_error(exc)
        self._fail(exc)

    def _on_finished(self) -> None:
        self._run_live = False
        returned, self._returned = self._returned, None
        try:
            if self._closed:
                return
            if returned is not None:
                self._on_done(returned)
            elif self.last_error is None:
                self._on_cancelled()
        except (ValueError, TypeError) as exc:
            self._fail(exc)
        finally:
            self._worker = None
            self._set_running(False)

    def _fail(self, exc: Exception | str) -> None:
        """Show an error in the status line and as a notification."""
        from napari.utils.notifications import show_error

        message = str(exc)
        self.last_error = message
        self._status.value = f'Error: {message}'
        show_error(f'{self._failure_title}: {message}')

    # ------------------------------------------------------------ closing

    def reset_choices(self, *args: Any) -> None:
        """Refresh the choices (napari calls it on layer changes), until closed."""
        if not self._closed:
            super().reset_choices(*args)

    def _listen(self, emitter, callback: Callable) -> None:
        """Connect ``callback`` to a viewer event until the widget closes."""
        emitter.connect(callback)
        self._listening.append((emitter, callback))

    def _on_parent_changed(self, parent) -> None:
        if parent is not None:
            self._docked = True
            if self._closed and self._worker is None:  # docked again
                self._closed = False
                for emitter, callback in self._listening:
                    emitter.connect(callback)
        elif self._docked:  # taken out of its dock: the dock was closed
            self.close_worker()

    def close_worker(self) -> None:
        """Stop a running worker; its late events are ignored.

        Called when the dock is closed or the widget destroyed (the viewer
        closed); the thread ends at the run's next step, and the viewer's
        events no longer reach the widget.
        """
        self._closed = True
        self._run_live = False
        for emitter, callback in self._listening:
            with suppress(RuntimeError, ValueError, TypeError):
                emitter.disconnect(callback)
        worker = self._worker
        if worker is not None:
            with suppress(RuntimeError):
                worker.quit()


def _close_ref(ref: weakref.ref, *args: Any) -> None:
    widget = ref()
    if widget is not None:
        widget.close_worker()
