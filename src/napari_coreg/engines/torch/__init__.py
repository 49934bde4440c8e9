"""The torch backend: batched gradient optimisation on any torch device.

Modules: ``engine`` (the level loop and :func:`run`), ``images`` (pyramid
images and their per-registration cache), ``levels`` (pyramid levels and
the pull-back sampler), ``init`` (starting points),
``compositional`` (Gauss-Newton for l1/mse/ncc), ``optim`` (BFGS, Adam),
``models`` (parameters to matrices), ``metrics`` (losses, their analytic
derivatives and Gauss-Newton systems).
"""

from .engine import pick_device, run

__all__ = ['pick_device', 'run']
