"""Thread pools sized to a sandbox's CPU limit.

numpy (OpenBLAS or MKL), torch, numexpr and anything on OpenMP start one thread per core they
see, and a sandbox sees every core of the host whatever its CPU quota: 64 threads sharing a
quota of 2 CPUs mostly wait on each other. Where a sandbox has a CPU limit, these variables
say ``ceil(cpus)`` unless the sandbox's own environment already sets them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["THREAD_VARIABLES", "with_thread_limits"]

# torch reads OMP_NUM_THREADS (and MKL_NUM_THREADS) for its intra-op pool: no variable of its own
THREAD_VARIABLES = (
    "BLIS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def with_thread_limits(env: Mapping[str, str], *, cpus: float | None) -> dict[str, str]:
    """``env`` with every thread-count variable it leaves unset at ``ceil(cpus)``; unchanged
    when there is no CPU limit (``None``)."""
    if cpus is None:
        return dict(env)
    count = str(max(1, math.ceil(cpus)))
    return {**dict.fromkeys(THREAD_VARIABLES, count), **env}
