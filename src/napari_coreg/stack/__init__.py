"""Register every frame of a stack: time-lapses, z-stacks, satellite series.

``register_stack`` / ``iter_register_stack`` check the stack and every
argument once (:mod:`.plan`), cut it into batches of frames
(:mod:`.batching`) and hand each batch to a backend as one batched problem
(the torch engine optimises the whole batch at once; SimpleITK frames go one
by one), in the order the reference mode asks (:mod:`.references`). With
the torch backend, batches after a chain's first start from their solved
neighbours and skip the coarse levels the observed motion does not need
(:mod:`.warm`); a warm start that fails is registered again from scratch.
Stacks
that do not fit in memory (dask, zarr, memory-mapped files) stream through
batch by batch (:mod:`.frames`); the aligned stack is computed lazily or
written to ``out`` (:mod:`.output`). With ``client=`` the batches run as
dask.distributed tasks (:mod:`.distributed`) and give the same matrices as a
local run. :mod:`.result` holds what comes back.

Conventions: numpy axis order; ``moving_from_fixed[i]`` maps a point of the
reference coordinates (physical units) to the point of frame ``i`` that shows
the same structure; matrices compose right to left.
"""

from .batching import auto_batch_size
from .frames import open_stack
from .plan import REFERENCES
from .register import iter_register_stack, register_stack
from .result import BatchReport, StackProgress, StackResult

__all__ = [
    'REFERENCES',
    'BatchReport',
    'StackProgress',
    'StackResult',
    'auto_batch_size',
    'iter_register_stack',
    'open_stack',
    'register_stack',
]
