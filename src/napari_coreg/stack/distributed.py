"""Run the batches as dask.distributed tasks, a bounded number in flight.

The matrices equal those of a local run with the same batch size: every
task runs :func:`~napari_coreg.stack.batching.solve` on one batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from numpy.typing import NDArray

from ..result import Progress
from .batching import BatchOut, Job, Reader, Spec, solve
from .frames import Frames, as_slab, is_dask, is_zarr

__all__ = ['TASKS_PER_WORKER', 'DistributedRunner', 'check_client']

#: Dask tasks in flight per worker (bounds client memory for big stacks).
TASKS_PER_WORKER = 2
#: Most workers of the LocalCluster made for ``client='local'``.
LOCAL_WORKERS = 4


def check_client(client: Any) -> None:
    """Raise ValueError unless ``client`` is None, ``'local'`` or a Client."""
    if client is not None and not (
        client == 'local' if isinstance(client, str) else hasattr(client, 'submit')
    ):
        raise ValueError(
            f"client must be a dask.distributed Client or 'local', got {client!r}"
        )


def _zarr_on_disk(array: Any) -> bool:
    """Whether a worker can open the same zarr store (not an in-memory one)."""
    store = getattr(array, 'store', None)
    name = type(store).__name__.lower()
    return 'memory' not in name and store is not None


class DistributedRunner:
    """Runs jobs as dask.distributed tasks (same interface as ``LocalRunner``).

    Parameters
    ----------
    frames : Frames
        The stack.
    spec : Spec
        What every batch needs.
    channel : int or None
        The channel registered on.
    client : dask.distributed.Client or 'local'
        ``'local'``: a LocalCluster made here and closed by :meth:`close`.
    """

    def __init__(
        self, frames: Frames, spec: Spec, channel: int | None, client: Any
    ) -> None:
        self.frames, self.spec, self.channel = frames, spec, channel
        self.own = None
        if isinstance(client, str):  # 'local'
            from distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=max(1, min(LOCAL_WORKERS, os.cpu_count() or 2)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            client = Client(cluster)
            self.own = cluster
        self.client = client
        self.futures: list = []

    def _source(self, job: Job) -> Any:
        """Give what a task reads its frames from.

        A reader (zarr on disk), a future (dask), or the slab itself (read
        here).
        """
        frames, channel = self.frames, self.channel
        if is_zarr(frames.data) and _zarr_on_disk(frames.data):
            return Reader(frames, job.start, job.stop, channel)
        if is_dask(frames.data):
            block = frames.data[frames.index(job.start, job.stop, channel)]
            future = self.client.compute(block)
            return self.client.submit(
                as_slab, future, frames.perm, frames.channel_axis is None, pure=False
            )
        return frames.slab(job.start, job.stop, channel)

    def run(
        self, jobs: list[Job], fixed: NDArray | None
    ) -> Iterator[tuple[Progress | None, BatchOut | None]]:
        """Yield ``(None, out)`` per finished job, in completion order."""
        from distributed import as_completed

        limit = TASKS_PER_WORKER * max(1, len(self.client.scheduler_info()['workers']))
        pending = list(jobs)
        fixed_future = None
        if fixed is not None:
            fixed_future = self.client.scatter(fixed, broadcast=True)
        queue = as_completed()
        while pending or queue.count():
            while pending and queue.count() < limit:
                job = pending.pop(0)
                future = self.client.submit(
                    solve, self.spec, job, self._source(job), fixed_future, pure=False
                )
                self.futures.append(future)
                queue.add(future)
            future = next(queue)
            result = future.result()
            self.futures.remove(future)
            future.release()
            yield None, result

    def close(self) -> None:
        """Cancel tasks in flight; close a LocalCluster made for the run."""
        for future in self.futures:
            future.cancel()
        self.futures.clear()
        if self.own is not None:
            self.client.close()
            self.own.close()
