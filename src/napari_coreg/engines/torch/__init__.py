"""The torch backend: batched gradient optimisation on any torch device.

Modules: ``engine`` (the level loop and :func:`run`), ``levels`` (pyramid
levels and the pull-back sampler), ``init`` (starting points), ``optim``
(Gauss-Newton, BFGS, Adam), ``models`` (parameters to matrices),
``metrics`` (losses and their Gauss-Newton systems).
"""

from .engine import pick_device, run

__all__ = ['pick_device', 'run']
