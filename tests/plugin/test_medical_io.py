"""Medical image files in napari: reader and writer keep the geometry."""

from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip('SimpleITK')
pytest.importorskip('napari')

from napari.components import ViewerModel  # noqa: E402

from napari_coreg._napari._medical_io import (  # noqa: E402
    MEDICAL_KEY,
    get_reader,
    write_medical_image,
)

PLUGIN = 'napari-coreg'


def _oblique(ndim: int) -> np.ndarray:
    """A direction with a rotation and a flip (ITK x, y, z order)."""
    if ndim == 2:
        a = np.deg2rad(30)
        return np.array([[np.cos(a), np.sin(a)], [np.sin(a), -np.cos(a)]])
    a, b = np.deg2rad(20), np.deg2rad(-35)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rz @ ry @ np.diag([1.0, -1.0, 1.0])


def _image(ndim: int, dtype=np.int16):
    rng = np.random.default_rng(ndim)
    shape = (5, 7, 9)[-ndim:] if ndim == 3 else (7, 9)
    array = rng.integers(-1000, 1000, shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([0.7, 1.3, 2.5][:ndim])
    image.SetOrigin([-120.5, 33.25, 400.0][:ndim])
    image.SetDirection(_oblique(ndim).ravel().tolist())
    return image


def _assert_world_is_physical(layer, image, tol=1e-6):
    """napari's data->world equals ITK's index->physical point (reversed)."""
    ndim = image.GetDimension()
    rng = np.random.default_rng(1)
    for index_xyz in rng.integers(0, 5, (6, ndim)):
        expected = image.TransformIndexToPhysicalPoint([int(i) for i in index_xyz])
        world = np.asarray(layer.data_to_world(index_xyz[::-1].astype(float)))
        np.testing.assert_allclose(world[::-1], expected, atol=tol)


def test_manifest_offers_the_reader_and_writer():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    readers = [r.command for r in manager.iter_compatible_readers(['scan.nii.gz'])]
    assert 'napari-coreg.get_medical_reader' in readers
    writers = [w.command for w in manager.iter_compatible_writers(['image'])]
    assert 'napari-coreg.write_medical_image' in writers


def test_get_reader_declines_other_paths(tmp_path):
    assert get_reader(str(tmp_path / 'photo.png')) is None
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM
    assert get_reader(str(tmp_path / 'scan.nrrd')) is not None


@pytest.mark.parametrize('suffix', ['.nii.gz', '.nii', '.mha', '.mhd', '.nrrd'])
@pytest.mark.parametrize('ndim', [2, 3])
def test_round_trip_keeps_data_and_geometry(tmp_path, suffix, ndim):
    image = _image(ndim)
    source = tmp_path / f'scan{suffix}'
    sitk.WriteImage(image, str(source))
    viewer = ViewerModel()
    (layer,) = viewer.open(str(source), plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, sitk.GetArrayFromImage(image))
    tol = 1e-4 if '.nii' in suffix else 1e-9  # NIfTI stores float32 geometry
    _assert_world_is_physical(layer, image, tol)
    np.testing.assert_allclose(layer.scale, image.GetSpacing()[::-1], atol=tol)
    np.testing.assert_allclose(layer.translate, image.GetOrigin()[::-1], atol=tol)
    info = layer.metadata[MEDICAL_KEY]
    assert info['source'] == str(source)
    np.testing.assert_allclose(info['itk_spacing'], image.GetSpacing(), atol=tol)
    assert info['pixel_type'] == image.GetPixelIDTypeAsString()

    out = tmp_path / f'saved{suffix}'
    written = viewer.layers.save(str(out), selected=False, plugin=PLUGIN)
    assert str(out) in written
    again = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), layer.data)
    np.testing.assert_allclose(again.GetSpacing(), image.GetSpacing(), atol=tol)
    np.testing.assert_allclose(again.GetOrigin(), image.GetOrigin(), atol=tol)
    np.testing.assert_allclose(again.GetDirection(), image.GetDirection(), atol=tol)


def test_shared_data_opens_in_physical_space(shared_data):
    viewer = ViewerModel()
    for path in (
        shared_data / 'ct_lung_3d_synthetic_rigid' / 'CT_3D_lung_fixed_small.mha',
        shared_data / 'mr_spine_t1_t2' / 'DzZ_T2.nrrd',  # direction diag(-1, -1)
    ):
        (layer,) = viewer.open(str(path), plugin=PLUGIN)
        _assert_world_is_physical(layer, sitk.ReadImage(str(path)))


def _write_dicom_series(folder, volume, spacing, origin):
    """A minimal CT series, one file per slice (SimpleITK's own recipe)."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = '1.2.826.0.1.3680043.2.1125.1.4242'
    for z in range(volume.shape[0]):
        slice_ = sitk.GetImageFromArray(volume[z])
        position = [origin[0], origin[1], origin[2] + z * spacing[2]]
        tags = {
            '0008|0060': 'CT',
            '0008|0016': '1.2.840.10008.5.1.4.1.1.2',
            '0020|000d': '1.2.826.0.1.3680043.2.1125.1.4241',
            '0020|000e': series_uid,
            '0020|0037': '1\\0\\0\\0\\1\\0',
            '0020|0032': '\\'.join(f'{v:.6f}' for v in position),
            '0020|0013': str(z + 1),
            '0028|0030': f'{spacing[1]:.6f}\\{spacing[0]:.6f}',
            '0018|0050': f'{spacing[2]:.6f}',
            '0008|0018': f'{series_uid}.{z + 1}',
        }
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        slice_.SetSpacing(spacing[:2])
        writer.SetFileName(str(folder / f'slice{z:03d}.dcm'))
        writer.Execute(slice_)


def test_dicom_series_folder(tmp_path):
    volume = (np.arange(4 * 6 * 8).reshape(4, 6, 8) * 3 - 50).astype(np.int16)
    spacing, origin = (0.8, 0.9, 2.5), (-10.0, 20.0, 30.0)
    folder = tmp_path / 'series'
    folder.mkdir()
    _write_dicom_series(folder, volume, spacing, origin)
    assert get_reader(str(folder)) is not None
    viewer = ViewerModel()
    (layer,) = viewer.open(str(folder), plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, volume)
    np.testing.assert_allclose(layer.scale, spacing[::-1], atol=1e-5)
    np.testing.assert_allclose(layer.translate, origin[::-1], atol=1e-5)
    assert layer.metadata[MEDICAL_KEY]['header']['0008|0060'].strip() == 'CT'


def test_writer_folds_a_rigid_affine_and_refuses_shear(tmp_path):
    """The file stores what the viewer shows (a rigid registration result set
    as the layer's affine); shear has no header form and is refused."""
    viewer = ViewerModel()
    data = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    a = np.deg2rad(25)
    affine = np.array(
        [[np.cos(a), -np.sin(a), 4.0], [np.sin(a), np.cos(a), -2.0], [0, 0, 1]]
    )
    layer = viewer.add_image(
        data, scale=(2.0, 0.5), translate=(1.0, 3.0), affine=affine
    )
    path = tmp_path / 'registered.mha'
    write_medical_image(str(path), layer.data, layer._get_state())
    saved = sitk.ReadImage(str(path))
    _assert_world_is_physical(layer, saved)
    sheared = viewer.add_image(data, shear=[0.3])
    with pytest.raises(ValueError, match='shear'):
        write_medical_image(
            str(tmp_path / 'x.nrrd'), sheared.data, sheared._get_state()
        )
    with pytest.raises(ValueError, match='.nii'):
        write_medical_image(str(tmp_path / 'x.png'), layer.data, layer._get_state())


def test_opened_layers_register_in_physical_space(shared_data):
    """A reader layer's geometry is what the core uses for SimpleITK images."""
    from napari_coreg.inputs import as_image

    path = shared_data / 'mr_spine_t1_t2' / 'DzZ_T2.nrrd'
    (layer,) = ViewerModel().open(str(path), plugin=PLUGIN)
    grid = as_image(sitk.ReadImage(str(path)), 'moving').grid
    np.testing.assert_allclose(layer.scale, grid.spacing)
    np.testing.assert_allclose(layer.translate, grid.origin)
    np.testing.assert_allclose(layer.rotate, grid.direction)
