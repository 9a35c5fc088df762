"""glibc malloc settings for CPU training loops.

Each training step frees and re-allocates the same few MB-sized tensors. With glibc's
defaults, blocks that size are often mapped fresh from the kernel and returned on free, so
every step pays page faults and zero-filling again: 33.5 M minor faults in one 37-minute CPU
reproduction, and about a quarter of a stacked TopK SAE step (measured in
benchmarks/bench_training.py). Keeping freed memory in the process's heap removes that.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # <malloc.h>: free memory at the heap's top kept before trimming
_M_MMAP_THRESHOLD = -3  # <malloc.h>: requests at least this large get their own mapping


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Serve allocations below `mmap_threshold` bytes from the heap and keep up to
    `trim_threshold` bytes of freed memory for reuse. Process-wide; for programs, not
    libraries (the CLI calls it). Returns False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # no libc found, or no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
