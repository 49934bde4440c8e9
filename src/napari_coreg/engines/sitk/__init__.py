"""The SimpleITK backend: ``ImageRegistrationMethod``, one ``Execute`` per level."""

from .engine import run

__all__ = ['run']
