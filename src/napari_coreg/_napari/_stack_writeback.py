"""From a stack registration back to layers: new layers or "follow the slider".

Pure functions on layers and a layer list (they run in a real viewer or in
``napari.components.ViewerModel``), used by the *Register stack* widget.
Neither way touches the layers' pixels, and both can be undone with
:func:`undo_stack`:

- :func:`write_stack_layers`: a layer ``"<layer> registered"`` holding the
  aligned stack (updated in place on a rerun), with the per-frame transforms
  in its ``metadata['napari_coreg']['stack']``;
- :func:`start_following` / :func:`show_frames`: the layer keeps its data;
  its ``affine`` is rebound to the current frame's transform whenever the
  slider moves; :func:`stop_following` restores the affine it had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._output import same_placement, write_output
from ._records import STACK_KEY, can_undo, output_id, push_history, undo

__all__ = [
    'Following',
    'frame_affine',
    'frame_index',
    'show_frames',
    'start_following',
    'stop_following',
    'undo_stack',
    'write_stack_layers',
]

#: Kind of the output id of a stack's registered layer.
STACK_OUTPUT = 'stack-registered'


def frame_affine(
    base: np.ndarray,
    fixed_from_moving: np.ndarray,
    spatial_axes: tuple[int, ...],
    ndim: int,
) -> np.ndarray:
    """Layer ``affine`` that shows one frame in the reference coordinates.

    Parameters
    ----------
    base : ndarray, shape (ndim + 1, ndim + 1)
        The layer's own affine, applied after.
    fixed_from_moving : ndarray, shape (D + 1, D + 1)
        The frame's transform; acts on the spatial axes of the layer's
        physical coordinates; the other axes (stack, channels) are left alone.
    spatial_axes : tuple of int
        The layer's spatial axes.
    ndim : int
        The layer's number of dimensions.

    Returns
    -------
    ndarray, shape (ndim + 1, ndim + 1)
        The affine to give the layer.
    """
    embedded = np.eye(ndim + 1)
    index = [*spatial_axes, ndim]
    embedded[np.ix_(index, index)] = fixed_from_moving
    return np.asarray(base, dtype=np.float64) @ embedded


def frame_index(layer, world_point, axis: int) -> int:
    """The frame of ``layer``'s stack ``axis`` shown at ``world_point``."""
    point = list(world_point)[-layer.ndim :]
    index = layer.world_to_data(point)[axis]
    return int(np.clip(np.round(index), 0, layer.data.shape[axis] - 1))


def write_stack_layers(layers, sources: list, aligned: list, record: dict) -> list:
    """Add (or update in place) ``"<layer> registered"`` for each source layer.

    Parameters
    ----------
    layers : napari LayerList
        Where the layers go.
    sources : list of napari.layers.Image
        The registered layer and the layers the transforms were applied to.
    aligned : list of array
        Each source's aligned stack.
    record : dict
        ``StackResult.to_dict()``: stored on every written layer.

    Returns
    -------
    list of napari.layers.Image
        The written layers.
    """
    outputs = []
    for source, data in zip(sources, aligned, strict=True):
        ident = output_id(source.name, STACK_OUTPUT)
        output = write_output(
            layers,
            source,
            data,
            output=ident,
            record=record,
            record_key=STACK_KEY,
            placement=same_placement(source),
        )
        push_history(
            source,
            {'action': 'resample', 'output_id': ident, 'output_name': output.name},
            None,
            key=STACK_KEY,
        )
        outputs.append(output)
    return outputs


@dataclass(eq=False)
class Following:
    """Layers whose affine follows the slider, and what they had before."""

    layers: list
    layouts: list
    fixed_from_moving: NDArray[np.float64]
    affines: list


def start_following(
    sources: list, layouts: list, record: dict, fixed_from_moving: NDArray
) -> Following:
    """Record the stack transforms on ``sources`` and make them follow the slider.

    Parameters
    ----------
    sources : list of napari layers
        Layers sharing the stack's frames.
    layouts : list of tuple
        Per layer ``(axis, channel_axis, spatial_axes)``.
    record : dict
        ``StackResult.to_dict()``.
    fixed_from_moving : ndarray, shape (N, D + 1, D + 1)
        Per frame.

    Returns
    -------
    Following
        Pass it to :func:`show_frames` whenever the slider moves.
    """
    affines = [np.array(layer.affine.affine_matrix) for layer in sources]
    for layer, before in zip(sources, affines, strict=True):
        entry = {**record, 'mode': 'follow', 'affine_before': before.tolist()}
        push_history(
            layer,
            {'action': 'affine', 'previous_affine': before.tolist()},
            entry,
            key=STACK_KEY,
        )
    return Following(list(sources), list(layouts), fixed_from_moving, affines)


def show_frames(
    state: Following, layers, frame_of: Callable[[object, int], int]
) -> None:
    """Give each following layer the affine of the frame shown now.

    ``frame_of(layer, axis)`` is the frame shown (see :func:`frame_index`);
    layers no longer in ``layers`` are skipped.
    """
    present = list(layers)
    for layer, base, (axis, _, spatial) in zip(
        state.layers, state.affines, state.layouts, strict=True
    ):
        if layer not in present:
            continue
        frame = frame_of(layer, axis)
        layer.affine = frame_affine(
            base, state.fixed_from_moving[frame], spatial, layer.ndim
        )


def stop_following(state: Following, layers) -> None:
    """Give the following layers back the affine they had."""
    present = list(layers)
    for layer, base in zip(state.layers, state.affines, strict=True):
        if layer in present:
            layer.affine = base


def undo_stack(layers, sources: list) -> list[str]:
    """Undo the last stack write-back on each of ``sources``.

    Returns
    -------
    list of str
        What was done, per layer that had something to undo.
    """
    return [undo(layers, layer) for layer in sources if can_undo(layer)]
