"""``register_layers``: the dock widget's registration, from a script or console."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..quality.hold import hold_reasons
from ..result import Progress, RegistrationResult
from ._writeback import apply_result, request_from_layers, run_request

__all__ = ['register_layers']


def _layer(viewer, layer_or_name, role: str):
    if isinstance(layer_or_name, str):
        try:
            return viewer.layers[layer_or_name]
        except KeyError:
            names = ', '.join(repr(layer.name) for layer in viewer.layers)
            raise ValueError(
                f'no layer named {layer_or_name!r} for the {role} image; the viewer '
                f'has {names or "no layers"}'
            ) from None
    return layer_or_name


def register_layers(
    viewer,
    fixed,
    moving,
    model: str = 'rigid',
    metric: str = 'ncc',
    backend: str = 'torch',
    *,
    write_back: str | None = None,
    ndim: int | None = None,
    fixed_mask=None,
    moving_mask=None,
    init: str = 'auto',
    callback: Callable[[Progress], None] | None = None,
    apply_anyway: bool = False,
    **settings: Any,
) -> RegistrationResult:
    """Register two image layers of a viewer and show the result, like the widget.

    Runs in the calling thread (from napari's console the viewer waits until
    it is done), then writes the result back exactly as the *Register images*
    widget does, with the same metadata and undo history.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
        The viewer holding the layers.
    fixed, moving : str or napari.layers.Image
        Layer names (or layers): ``fixed`` stays, ``moving`` is aligned to it.
    model : {'translation', 'rigid', 'similarity', 'affine', 'homography'}
        Transform model.
    metric : {'l1', 'mse', 'ncc', 'mi'}
        Similarity measure (``'mi'`` for different modalities).
    backend : {'torch', 'sitk'}
        Registration backend.
    write_back : {'affine', 'resample'}, optional
        ``'affine'`` (default except for homographies) sets ``moving.affine``
        so the layers overlay in world coordinates; the pixels are not
        touched. ``'resample'`` adds (or updates) a layer
        ``"<moving> registered"`` on the fixed layer's grid.
    ndim : {2, 3}, optional
        Spatial dimensions (the layers' last axes); other axes are sliced at
        the viewer's current position. Default: 3 for volumes, else 2.
    fixed_mask, moving_mask : str or Labels or Shapes layer, optional
        Pixels that count (labels: non-zero; shapes: inside).
    init : str
        ``'auto'``, ``'identity'``, ``'center'``, ``'phase'``, ``'features'``,
        ``'fourier-mellin'``, ``'moments'``, or ``'current'`` to start from
        where the layers are shown now.
    callback : callable, optional
        Called with every :class:`napari_coreg.Progress`.
    apply_anyway : bool
        Apply a result the quality check holds (a ``'failed'`` verdict, or a
        metric worse than before), as the widget's *Apply anyway* does. By
        default such a result is returned but not applied, with a
        ``UserWarning`` that gives the reasons.
    **settings
        Pyramid and optimiser settings (``levels``, ``shrink_factors``,
        ``smoothing_sigmas``, ``iterations``, ``optimizer``,
        ``learning_rate``, ``sampling``, ``mi_bins``, ``seed``, ``device``).

    Returns
    -------
    RegistrationResult
        ``moving_from_fixed`` is in the layers' registration frames (napari
        physical coordinates: ``scale`` and ``translate``).

    Raises
    ------
    ValueError
        Unknown layer names, same layer twice, unsupported combinations,
        bad input: before anything is changed.

    Examples
    --------
    From napari's console (``viewer`` is defined there)::

        from napari_coreg import register_layers
        result = register_layers(viewer, 'brain T1', 'brain PD',
                                 model='rigid', metric='mi')
        result.metric_after, viewer.layers['brain PD'].affine
    """
    fixed_layer = _layer(viewer, fixed, 'fixed')
    moving_layer = _layer(viewer, moving, 'moving')
    masks = {
        key: None if value is None else _layer(viewer, value, key.replace('_', ' '))
        for key, value in (('fixed_mask', fixed_mask), ('moving_mask', moving_mask))
    }
    request = request_from_layers(
        fixed_layer,
        moving_layer,
        model,
        metric,
        backend,
        ndim=ndim,
        write_back=write_back,
        init=init,
        world_point=viewer.dims.point,
        **masks,
        **settings,
    )
    steps = run_request(request)
    while True:
        try:
            progress = next(steps)
        except StopIteration as done:
            outcome = done.value
            break
        if callback is not None:
            callback(progress)
    result = outcome.result
    held = [] if result is None or apply_anyway else hold_reasons(result)
    if held:
        warnings.warn(
            'the result was not applied: '
            + '; '.join(held)
            + ' (pass apply_anyway=True to apply it all the same)',
            UserWarning,
            stacklevel=2,
        )
        return result
    apply_result(viewer.layers, request, outcome)
    return result
