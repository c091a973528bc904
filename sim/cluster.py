"""Sweeps on a Dask cluster: the optional ``cluster`` extra (``pip install '.[cluster]'``).

``dask_executor`` gives the ``concurrent.futures`` executor of a Dask client,
for ``run.sweep``: connected to a running scheduler (every worker must have
this package installed), or to a local cluster of worker processes started
for the sweep and stopped after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager


@contextmanager
def dask_executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """An executor on the Dask scheduler at ``scheduler`` (``tcp://host:8786``), or on a
    local cluster of ``workers`` single-threaded processes (default: one per CPU)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError("the dask executor needs Dask's distributed scheduler: "
                         "pip install 'mcproxy-pmip[cluster]'") from exc
    if scheduler:
        with Client(scheduler) as client:
            yield client.get_executor()
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client.get_executor()
