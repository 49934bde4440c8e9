"""The napari plugin: widgets, write-back to layers, sample data.

This is the only part of the package that imports napari, Qt or magicgui.
It is reached through the npe2 manifest (``napari.yaml``) and through
:func:`napari_coreg.register_layers`.
"""
