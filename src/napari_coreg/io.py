"""Save and load transforms: our JSON, and ITK transform files (``.tfm``).

Never pickle: both formats are text (or HDF5 for ITK's ``.h5``) that other
tools read.

Conventions
-----------
- ``moving_from_fixed`` maps a fixed *physical* point to the moving physical
  point showing the same structure (ITK's direction: the transform that
  resamples moving onto the fixed grid). ``fixed_from_moving`` is its
  inverse, napari's direction (``moving_layer.affine = fixed_layer.affine @
  fixed_from_moving``).
- Our matrices, and the JSON, are in numpy axis order (``(row, col)``,
  ``(plane, row, col)``). ITK files are in ITK's ``(x, y, z)`` order: the
  matrix is converted with :func:`napari_coreg.transforms.reverse_axes`. For
  images read by SimpleITK (NIfTI, NRRD, MetaImage, DICOM, or napari layers
  opened with this plugin's reader) physical space is ITK's LPS millimetres,
  so the ``.tfm`` is what SimpleITK, ITK, elastix and 3D Slicer expect (Slicer
  shows it as a linear transform "from parent" in its RAS space).
- Units are physical: pixel index times spacing plus origin; pixels when the
  images were registered without spacing.
- affinder's CSV holds the opposite direction (``fixed_from_moving``) in
  pixel units; it is not read here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .options import MODEL_SPECS, Model

__all__ = [
    'ITK_SUFFIXES',
    'TransformFile',
    'check_itk_writable',
    'check_output_path',
    'load_transform',
    'save_transform',
]

#: File name endings written and read through SimpleITK's transform IO.
ITK_SUFFIXES = ('.tfm', '.txt', '.h5', '.hdf5', '.mat')
#: Identifies our JSON files.
FORMAT = 'napari-coreg transform'
FORMAT_VERSION = 1
_MATRIX_KEYS = ('moving_from_fixed', 'fixed_from_moving')

CONVENTIONS = {
    'direction': 'moving_from_fixed maps fixed physical points to moving '
    'physical points (ITK pull-back: it resamples moving onto the fixed '
    'grid); fixed_from_moving is its inverse (napari layer.affine direction)',
    'axes': 'numpy order: (row, col) in 2D, (plane, row, col) in 3D; '
    'ITK files use (x, y, z), the reverse',
    'units': 'physical: pixel index times spacing plus origin (pixels when '
    'no spacing was given; LPS millimetres for images read by SimpleITK)',
    'matrix': 'homogeneous (D + 1, D + 1), applied to column vectors '
    '[p, 1]; a homography is divided by its last coordinate',
}


@dataclass(frozen=True, eq=False)
class TransformFile:
    """A transform read by :func:`load_transform`.

    Attributes
    ----------
    moving_from_fixed : ndarray, shape (D + 1, D + 1) or (N, D + 1, D + 1)
        Physical, numpy axis order (one matrix per frame for a stack).
    model : str or None
        ``'translation'``, ``'rigid'``, ``'similarity'``, ``'affine'`` or
        ``'homography'`` when the file says so (ITK: from its transform type).
    format : str
        ``'json'`` or ``'itk'``.
    metadata : dict
        Everything else the file holds: for JSON, metric, backend, settings,
        figures, grids and version; for ITK files, ``itk_type``,
        ``itk_parameters`` and ``itk_fixed_parameters``.
    """

    moving_from_fixed: NDArray[np.float64]
    model: str | None = None
    format: str = 'json'
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        matrix = np.array(self.moving_from_fixed, dtype=np.float64)
        matrix.setflags(write=False)
        object.__setattr__(self, 'moving_from_fixed', matrix)

    @property
    def fixed_from_moving(self) -> NDArray[np.float64]:
        """Inverse of :attr:`moving_from_fixed` (napari's direction)."""
        return np.linalg.inv(self.moving_from_fixed)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return self.moving_from_fixed.shape[-1] - 1


def _is_itk(path: Path) -> bool:
    return path.name.lower().endswith(ITK_SUFFIXES)


def _check_matrix(matrix: ArrayLike, what: str) -> NDArray[np.float64]:
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(
            f'{what} must be a 3x3 (2D) or 4x4 (3D) matrix of numbers, got '
            f'{str(matrix)[:80]}'
        ) from None
    if (
        matrix.ndim not in (2, 3)
        or matrix.shape[-1] != matrix.shape[-2]
        or matrix.shape[-1] not in (3, 4)
    ):
        raise ValueError(
            f'{what} must be a 3x3 (2D) or 4x4 (3D) homogeneous matrix, or a '
            f'stack of them, got shape {matrix.shape}'
        )
    if not np.isfinite(matrix).all():
        raise ValueError(f'{what} contains NaN or infinite values')
    if np.any(np.abs(np.linalg.det(matrix)) < 1e-12):
        raise ValueError(f'{what} is singular: it is not an invertible transform')
    return matrix


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _describe(transform: Any, model: str | None) -> tuple[NDArray, str | None, dict]:
    """Matrix, model and metadata of a result, a loaded file or a matrix."""
    if isinstance(transform, TransformFile):
        meta = dict(transform.metadata)
        return transform.moving_from_fixed, model or transform.model, meta
    if hasattr(transform, 'moving_from_fixed'):
        matrix = np.asarray(transform.moving_from_fixed, dtype=np.float64)
        meta = transform.to_dict() if hasattr(transform, 'to_dict') else {}
        return matrix, model or getattr(transform, 'model', None), meta
    return transform, model, {}  # an array_like: _check_matrix converts it


def save_transform(
    path: str | Path,
    transform: Any,
    *,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a transform as our JSON or as an ITK transform file.

    Parameters
    ----------
    path : str or Path
        ``.json`` for our format (lossless: both directions, conventions,
        model, metric, backend, settings and figures), or ``.tfm`` (also
        ``.txt``, ``.h5``, ``.mat``) for ITK, read by SimpleITK, ITK, elastix
        and 3D Slicer.
    transform : RegistrationResult, StackResult, TransformFile or array_like
        A result of :func:`napari_coreg.register`, a loaded file, or a
        ``(D + 1, D + 1)`` ``moving_from_fixed`` matrix (physical, numpy
        order; a stack of them for JSON).
    model : str, optional
        Transform model, if ``transform`` does not say. It picks the ITK type:
        TranslationTransform, Euler2D/3DTransform (rigid),
        Similarity2D/3DTransform or AffineTransform (the default, and the
        fallback when the matrix does not fit the model exactly).
    metadata : dict, optional
        Extra JSON-able entries, stored under ``"metadata"`` in JSON.
    overwrite : bool
        Replace an existing file (default False: refuse, as the command
        line does without ``--force``).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        For an unknown suffix, a bad matrix, a homography or a stack as an
        ITK file (use ``.json``), a missing folder, or an existing file
        without ``overwrite=True``; all before anything is written.

    Notes
    -----
    Conventions: see :mod:`napari_coreg.io`. ``moving_from_fixed`` is ITK's
    "fixed to moving" transform, so a ``.tfm`` written here resamples the
    moving image onto the fixed one with ``SimpleITK.Resample(moving, fixed,
    SimpleITK.ReadTransform(path))``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from napari_coreg.io import save_transform, load_transform
    >>> matrix = np.array([[1.0, 0, 3], [0, 1, -2], [0, 0, 1]])
    >>> path = os.path.join(tempfile.mkdtemp(), 'shift.json')
    >>> _ = save_transform(path, matrix, model='translation')
    >>> load_transform(path).moving_from_fixed[:2, 2]
    array([ 3., -2.])
    """
    path = Path(path)
    matrix, model, meta = _describe(transform, model)
    matrix = _check_matrix(matrix, 'the transform')
    projective = not np.allclose(
        matrix[..., -1, :], np.eye(matrix.shape[-1])[-1], atol=1e-12
    )
    if model is None:
        model = 'homography' if projective else 'affine'
    check_output_path(path, overwrite)
    if _is_itk(path):
        check_itk_writable(matrix, model, projective)
        _save_itk(path, matrix, model, transform)
        return path
    document = {
        'format': FORMAT,
        'format_version': FORMAT_VERSION,
        **{k: v for k, v in meta.items() if k not in _MATRIX_KEYS},
        'moving_from_fixed': matrix.tolist(),
        'fixed_from_moving': np.linalg.inv(matrix).tolist(),
        'conventions': CONVENTIONS,
        'model': model,
    }
    if metadata:
        document['metadata'] = metadata
    document.setdefault('napari_coreg_version', _version())
    path.write_text(json.dumps(_jsonable(document), indent=1) + '\n', encoding='utf-8')
    return path


def _version() -> str:
    from . import __version__

    return __version__


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, a transform path that cannot be written.

    Raises
    ------
    ValueError
        For a suffix that is neither ``.json`` nor an ITK one, a folder that
        does not exist, a path that is a folder, or an existing file when
        ``overwrite`` is False.
    TypeError
        If ``overwrite`` is not a bool.
    """
    path = Path(path)
    if not isinstance(overwrite, bool):
        raise TypeError(f'overwrite must be True or False, got {overwrite!r}')
    if not _is_itk(path) and path.suffix.lower() != '.json':
        raise ValueError(
            f'unknown transform file type {path.name!r}: use .json (ours) '
            f'or an ITK file ({", ".join(ITK_SUFFIXES)})'
        )
    if path.is_dir():
        raise ValueError(f'{path} is a folder: give a file name such as t.json')
    if not path.parent.is_dir():
        raise ValueError(
            f'folder {path.parent} does not exist: create it first, or choose '
            'another place for the transform file'
        )
    if path.exists() and not overwrite:
        raise ValueError(
            f'{path} already exists: pass overwrite=True to replace it (--force '
            'on the command line), or choose another name'
        )
    return path


def check_itk_writable(matrix: NDArray, model: str | None, projective: bool) -> None:
    """Refuse a transform that an ITK file cannot hold (before any work)."""
    if projective or model == 'homography':
        raise ValueError(
            'a homography has no ITK linear transform (.tfm holds affine maps '
            'only): save it as .json instead'
        )
    if matrix.ndim == 3:
        raise ValueError(
            f'{matrix.shape[0]} per-frame transforms do not fit one ITK '
            'transform: save a stack as .json, or one frame at a time'
        )


def _save_itk(path: Path, matrix: NDArray, model: str, source: Any) -> None:
    import SimpleITK as sitk

    from ._sitk import ITK_TRANSFORMS, transform_from_matrix

    ndim = matrix.shape[0] - 1
    grid = getattr(source, 'fixed_grid', None)
    center = grid.center if grid is not None else np.zeros(ndim)
    itk_model = model if model in ITK_TRANSFORMS else 'affine'
    if not MODEL_SPECS[Model.parse(itk_model, 'model')].fits(matrix, atol=1e-6):
        itk_model = 'affine'
    transform = transform_from_matrix(matrix, itk_model, center=center)
    sitk.WriteTransform(transform, str(path))


def load_transform(path: str | Path) -> TransformFile:
    """Read a transform written by :func:`save_transform` or by ITK tools.

    Parameters
    ----------
    path : str or Path
        ``.json`` (ours) or an ITK transform file (``.tfm``, ``.txt``,
        ``.h5``, ``.mat``: any linear ITK transform, composite ones folded).

    Returns
    -------
    TransformFile
        ``moving_from_fixed`` (physical, numpy axis order), ``model``,
        ``format`` and the file's other entries as ``metadata``.

    Raises
    ------
    ValueError
        If the file is not a transform we can read (wrong format, bad or
        singular matrix, a non-linear ITK transform).
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no transform file at {path}')
    if _is_itk(path):
        return _load_itk(path)
    if path.suffix.lower() != '.json':
        raise ValueError(
            f'unknown transform file type {path.name!r}: use .json or an ITK '
            f'file ({", ".join(ITK_SUFFIXES)})'
        )
    document = _read_json(path)
    if not isinstance(document, dict) or (
        'moving_from_fixed' not in document and 'fixed_from_moving' not in document
    ):
        raise ValueError(
            f'{path.name} holds no transform: expected a "moving_from_fixed" '
            'matrix (a file written by napari_coreg.save_transform)'
        )
    if 'moving_from_fixed' in document:
        matrix = _check_matrix(document['moving_from_fixed'], 'moving_from_fixed')
    else:
        inverse = _check_matrix(document['fixed_from_moving'], 'fixed_from_moving')
        matrix = np.linalg.inv(inverse)
    meta = {k: v for k, v in document.items() if k not in (*_MATRIX_KEYS, 'model')}
    return TransformFile(
        moving_from_fixed=matrix,
        model=document.get('model'),
        format='json',
        metadata=meta,
    )


def _read_json(path: Path) -> Any:
    """The JSON document of ``path``, or a ValueError that says why not."""
    raw = path.read_bytes()
    if raw[:1] == b'\x80' or raw[:2] in (b'(d', b'(l', b'}q', b']q'):
        raise ValueError(
            f'{path.name} looks like a Python pickle, which is never read (it '
            'can run code): use a .json written by save_transform'
        )
    try:
        return json.loads(raw.decode('utf-8'))
    except UnicodeDecodeError:
        raise ValueError(
            f'{path.name} is not a text JSON file (it holds binary data): use a '
            '.json written by save_transform'
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path.name} is not valid JSON: {exc}') from None
    except RecursionError:
        raise ValueError(
            f'{path.name} is nested too deeply to be a transform file'
        ) from None


def _leaves(transform) -> list:
    """The non-composite transforms of an ITK transform, in file order."""
    import SimpleITK as sitk

    actual = transform.Downcast()
    if not isinstance(actual, sitk.CompositeTransform):
        return [actual]
    leaves = []
    for index in range(actual.GetNumberOfTransforms()):
        leaves.extend(_leaves(actual.GetNthTransform(index)))
    return leaves


def _numbers(line: str) -> list[float] | None:
    try:
        return [float(v) for v in line.split(':', 1)[1].split()]
    except ValueError:
        return None


def _check_itk_text(path: Path, transform) -> None:
    """Refuse a text ITK file that SimpleITK read only in part.

    SimpleITK reads a file cut inside ``Parameters`` or without
    ``FixedParameters`` as the identity without complaint; here every
    transform block must carry both lines, and their values must be the
    ones SimpleITK returned.
    """
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except UnicodeDecodeError:
        return  # a binary ITK file (HDF5, MATLAB): SimpleITK checked it
    params = [_numbers(x) for x in lines if x.startswith('Parameters:')]
    fixed = [_numbers(x) for x in lines if x.startswith('FixedParameters:')]
    leaves = _leaves(transform)
    expected_params = [list(t.GetParameters()) for t in leaves]
    expected_fixed = [list(t.GetFixedParameters()) for t in leaves]

    def same(found, expected) -> bool:
        return len(found) == len(expected) and all(
            a is not None and len(a) == len(b) and np.allclose(a, b, rtol=1e-6)
            for a, b in zip(found, expected, strict=True)
        )

    if not (same(params, expected_params) and same(fixed, expected_fixed)):
        raise ValueError(
            f'{path.name} is truncated or damaged: every transform needs complete '
            '"Parameters:" and "FixedParameters:" lines (SimpleITK would read '
            'it as the identity)'
        )


def _load_itk(path: Path) -> TransformFile:
    import SimpleITK as sitk

    from ._sitk import matrix_from_transform, model_of_transform

    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise ValueError(f'SimpleITK cannot read {path.name}: {exc}') from None
    _check_itk_text(path, transform)
    matrix = _check_matrix(matrix_from_transform(transform), 'the ITK transform')
    actual = transform.Downcast()
    name = actual.GetName()
    if isinstance(actual, sitk.CompositeTransform):
        model = 'affine'
    else:
        model = model_of_transform(name) or 'affine'
    return TransformFile(
        moving_from_fixed=matrix,
        model=model,
        format='itk',
        metadata={
            'itk_type': name,
            'itk_parameters': list(actual.GetParameters()),
            'itk_fixed_parameters': list(actual.GetFixedParameters()),
            'source': str(path),
        },
    )
