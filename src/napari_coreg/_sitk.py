"""Conversions between our numpy-order world and SimpleITK (x, y, z) objects.

Import this module only where SimpleITK is needed: it imports SimpleITK.

Conventions
-----------
- Our matrices are ``(D + 1, D + 1)`` in numpy axis order (``(row, col)``,
  ``(plane, row, col)``); ITK's are in ``(x, y[, z])`` order, the reverse.
  :func:`napari_coreg.transforms.reverse_axes` converts between them.
- Both describe the same physical map: ``moving_from_fixed`` sends a fixed
  physical point to a moving physical point, which is what an ITK transform
  returned by a registration (or read from a ``.tfm``) does.
- ITK's centred transforms map ``x -> A (x - c) + c + t``; as a homogeneous
  matrix that is ``[A | t + c - A c]``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray

from .options import MODEL_SPECS, Model
from .transforms import Grid, homogeneous, reverse_axes

__all__ = [
    'ITK_TRANSFORMS',
    'empty_transform',
    'grid_from_image',
    'image_from_array',
    'matrix_from_transform',
    'model_of_transform',
    'set_transform_matrix',
    'transform_from_matrix',
]

#: The ITK transform class of each model, per dimension; also how a
#: ``.tfm`` file's transform type is read back as a model.
ITK_TRANSFORMS: dict[str, dict[int, type[sitk.Transform]]] = {
    'translation': {2: sitk.TranslationTransform, 3: sitk.TranslationTransform},
    'rigid': {2: sitk.Euler2DTransform, 3: sitk.Euler3DTransform},
    'similarity': {2: sitk.Similarity2DTransform, 3: sitk.Similarity3DTransform},
    'affine': {2: sitk.AffineTransform, 3: sitk.AffineTransform},
}
#: ITK transform types written by other tools that are one of our models.
_OTHER_ITK_NAMES = {'VersorRigid3DTransform': 'rigid'}


def grid_from_image(image: sitk.Image) -> Grid:
    """The :class:`Grid` (numpy order) of a SimpleITK image."""
    ndim = image.GetDimension()
    direction_xyz = np.array(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    return Grid(
        tuple(image.GetSize()[::-1]),
        image.GetSpacing()[::-1],
        image.GetOrigin()[::-1],
        direction_xyz[::-1, ::-1],
    )


def place_on_grid(image: sitk.Image, grid: Grid) -> sitk.Image:
    """Set ``image``'s spacing, origin and direction to ``grid``'s (in place)."""
    image.SetSpacing([float(s) for s in grid.spacing[::-1]])
    image.SetOrigin([float(o) for o in grid.origin[::-1]])
    image.SetDirection([float(d) for d in grid.direction[::-1, ::-1].ravel()])
    return image


def model_of_transform(name: str) -> str | None:
    """Our model name for an ITK transform type name (e.g. from a ``.tfm``)."""
    for model, classes in ITK_TRANSFORMS.items():
        if model != 'affine' and any(c.__name__ == name for c in classes.values()):
            return model
    return _OTHER_ITK_NAMES.get(name)


def image_from_array(
    array: ArrayLike, grid: Grid, *, vector: bool = False
) -> sitk.Image:
    """A SimpleITK image of ``array`` (numpy order) placed on ``grid``.

    Parameters
    ----------
    array : array_like, shape grid.shape (+ components if ``vector``)
    grid : Grid
        Spacing, origin and direction in numpy order; reversed for ITK.
    vector : bool
        Whether the last axis holds pixel components (e.g. RGB).
    """
    image = sitk.GetImageFromArray(np.asarray(array), isVector=vector)
    return place_on_grid(image, grid)


def _linear_parts(transform: sitk.Transform) -> list[sitk.Transform]:
    """The transforms of a (nested) composite, in the order they compose."""
    transform = transform.Downcast()
    if isinstance(transform, sitk.CompositeTransform):
        parts = []
        for i in range(transform.GetNumberOfTransforms()):
            parts.extend(_linear_parts(transform.GetNthTransform(i)))
        return parts
    return [transform]


def _xyz_matrix(transform: sitk.Transform) -> NDArray[np.float64]:
    ndim = transform.GetDimension()
    if isinstance(transform, sitk.TranslationTransform):
        return homogeneous(np.eye(ndim), transform.GetOffset())
    if transform.GetName() == 'IdentityTransform':
        return np.eye(ndim + 1)
    needed = ('GetMatrix', 'GetCenter', 'GetTranslation')
    if not all(hasattr(transform, name) for name in needed):
        raise ValueError(
            f'{transform.GetName()} is not a linear (matrix) transform: only '
            'translation, rigid, similarity and affine ITK transforms convert '
            'to a matrix'
        )
    linear = np.array(transform.GetMatrix(), dtype=np.float64).reshape(ndim, ndim)
    centre = np.array(transform.GetCenter(), dtype=np.float64)
    translation = np.array(transform.GetTranslation(), dtype=np.float64)
    return homogeneous(linear, translation + centre - linear @ centre)


def matrix_from_transform(transform: sitk.Transform) -> NDArray[np.float64]:
    """Homogeneous physical matrix of an ITK transform, in numpy axis order.

    Composite transforms are folded exactly (ITK applies the transform added
    last first, so the matrices multiply in the order they were added).

    Raises
    ------
    ValueError
        For a transform that is not linear (B-spline, displacement field).
    """
    matrix = np.eye(transform.GetDimension() + 1)
    for part in _linear_parts(transform):
        matrix = matrix @ _xyz_matrix(part)
    return reverse_axes(matrix)


def empty_transform(model: str, ndim: int) -> sitk.Transform:
    """The identity ITK transform of a model: Translation, Euler, Similarity, Affine."""
    kind = ITK_TRANSFORMS.get(model, {}).get(ndim)
    if kind is None:
        raise ValueError(f'no ITK transform for a {ndim}D {model!r} model')
    # the dimension-generic classes take it as an argument, the others not
    generic = kind in (sitk.TranslationTransform, sitk.AffineTransform)
    return kind(ndim) if generic else kind()


def set_transform_matrix(
    transform: sitk.Transform, matrix: ArrayLike, center: ArrayLike | None = None
) -> None:
    """Set an ITK transform to a numpy-order physical matrix, in place.

    ``center`` (numpy order, physical) is the centre of rotation kept by
    centred transforms (default: unchanged). The matrix must fit the
    transform's model (:meth:`napari_coreg.options.ModelSpec.fits`).
    """
    xyz = reverse_axes(matrix)
    ndim = xyz.shape[0] - 1
    linear, offset = xyz[:ndim, :ndim], xyz[:ndim, ndim]
    if isinstance(transform, sitk.TranslationTransform):
        transform.SetOffset([float(v) for v in offset])
        return
    if center is not None:
        transform.SetCenter([float(v) for v in np.asarray(center, float)[::-1]])
    c = np.array(transform.GetCenter(), dtype=np.float64)
    if isinstance(transform, (sitk.Euler2DTransform, sitk.Euler3DTransform)):
        # orthonormalise rounding noise away; callers check the model fits first
        u, _, vt = np.linalg.svd(linear)
        linear = u @ vt
    transform.SetMatrix([float(v) for v in linear.ravel()])
    actual = np.array(transform.GetMatrix(), dtype=np.float64).reshape(ndim, ndim)
    transform.SetTranslation([float(v) for v in offset - c + actual @ c])


def transform_from_matrix(
    matrix: ArrayLike, model: str = 'affine', center: ArrayLike | None = None
) -> sitk.Transform:
    """An ITK transform of ``model`` equal to a numpy-order physical matrix.

    Parameters
    ----------
    matrix : array_like, shape (D + 1, D + 1)
        ``moving_from_fixed`` (physical, numpy order), affine.
    model : {'translation', 'rigid', 'similarity', 'affine'}
        ITK type to use: TranslationTransform, Euler2D/3D, Similarity2D/3D
        or AffineTransform. The matrix must fit it.
    center : array_like, optional
        Centre of rotation (numpy order, physical); default the origin.

    Raises
    ------
    ValueError
        If the matrix is projective or does not fit ``model``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    ndim = matrix.shape[0] - 1
    if matrix.shape != (ndim + 1, ndim + 1) or ndim not in (2, 3):
        raise ValueError(f'expected a 3x3 or 4x4 matrix, got shape {matrix.shape}')
    if not np.allclose(matrix[-1], np.eye(ndim + 1)[-1], atol=1e-12):
        raise ValueError(
            'a projective matrix (homography) has no ITK linear transform: '
            'save it as .json instead'
        )
    if not MODEL_SPECS[Model.parse(model, 'model')].fits(matrix, atol=1e-6):
        raise ValueError(f'the matrix is not a {model} transform')
    transform = empty_transform(model, ndim)
    set_transform_matrix(transform, matrix, center=center)
    return transform
