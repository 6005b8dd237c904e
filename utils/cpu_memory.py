"""Keep freed CPU memory in the process, so that large tensors are not re-mapped from the kernel every step.

glibc serves allocations above its mmap threshold (128 KiB at first, at most 32 MiB) with fresh ``mmap`` pages
and unmaps them on free; every training step then pays a page fault per 4 KiB of every large activation again.
With the DINOv2 head's 65,536 prototypes this costs more than the arithmetic on those tensors: a 32 MiB copy took
14 ms in freshly mapped memory against 3 ms in reused memory on this project's 2-core machine, and the tiny
recipe's step at 65,536 prototypes went from 776 to 482 ms (``bench/train_step.py``). Turning off glibc's mmap
path and its heap trimming keeps the freed memory for the next step, as PyTorch's CUDA caching allocator does on
the GPU (and as jemalloc or tcmalloc would, without another dependency). The price: the process keeps its peak
memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the kernel; once per process.

    Returns True when the setting took effect (Linux with glibc), False elsewhere (nothing changes there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
