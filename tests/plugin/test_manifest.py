"""The npe2 manifest: valid, every python_name importable, widgets open by name."""

from __future__ import annotations

import pytest

npe2 = pytest.importorskip('npe2')


@pytest.fixture(scope='module')
def manifest():
    return npe2.PluginManifest.from_distribution('napari-coreg')


def test_manifest_is_valid(manifest):
    # what `npe2 validate napari-coreg` checks: schema, then every import
    manifest.validate_imports()
    assert manifest.name == 'napari-coreg'


def test_every_python_name_imports(manifest):
    from npe2.manifest.utils import import_python_name

    for command in manifest.contributions.commands:
        if command.python_name:
            assert callable(import_python_name(command.python_name)), command.id


def test_contributions_we_promise(manifest):
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {
        'Register images',
        'Save transform',
        'Load transform',
        'Apply transform',
    } <= widgets
    samples = {s.key for s in manifest.contributions.sample_data}
    assert {'rigid_pair', 'multimodal_pair', 'homography_pair'} <= samples
    menus = manifest.contributions.menus
    assert any(
        item.command == 'napari-coreg.make_registration_widget'
        for item in menus['napari/layers/register']
    )


def test_dock_widget_opens_from_manifest(make_napari_viewer):
    from napari_coreg._napari._widget import RegistrationWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget('napari-coreg', 'Register images')
    assert isinstance(widget, RegistrationWidget)


@pytest.mark.parametrize(
    'name', ['Save transform', 'Load transform', 'Apply transform']
)
def test_transform_widgets_open_from_manifest(make_napari_viewer, name):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget('napari-coreg', name)
    assert widget is not None
