"""The live preview: the moving layer follows the optimiser during a run.

Pure functions of a layer list and a :class:`~._request.Request` (no Qt):
:meth:`LivePreview.show` sets the moving layer's ``affine`` for the current
transform; :meth:`LivePreview.restore` gives it back the affine it had.
"""

from __future__ import annotations

import numpy as np

from ._request import Request

__all__ = ['LivePreview']


class LivePreview:
    """Show intermediate transforms of one run on its moving layer.

    Parameters
    ----------
    layers : napari LayerList
        The viewer's layers (the moving layer is found by name).
    request : Request
        The run.
    """

    def __init__(self, layers, request: Request) -> None:
        self._layers = layers
        self._request = request
        self.shown = False

    def moving_layer(self):
        """The run's moving layer, or ``None`` if it was removed."""
        for layer in self._layers:
            if layer.name == self._request.moving_name:
                return layer
        return None

    def show(self, matrix) -> None:
        """Show a current ``moving_from_fixed`` (ignored when projective)."""
        if matrix is None:
            return
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 3:
            matrix = matrix[0]
        size = self._request.ndim + 1
        if matrix.shape != (size, size) or not np.allclose(matrix[-1, :-1], 0):
            return  # projective: cannot be shown through an affine
        moving = self.moving_layer()
        if moving is None:
            return
        try:
            moving.affine = self._request.preview_affine(matrix)
        except (ValueError, np.linalg.LinAlgError):
            return
        self.shown = True

    def restore(self) -> None:
        """Give the moving layer back the affine it had before the run."""
        if self.shown:
            moving = self.moving_layer()
            if moving is not None:
                moving.affine = self._request.moving_affine_before
        self.shown = False
