"""glibc malloc settings for CPU training and probing.

glibc serves large blocks as fresh mappings from the kernel and returns them on free, so a
loop that frees and re-allocates them pays page faults and zero-filling every time. Below
32 MB glibc learns (its mmap threshold rises to the largest block freed so far); above, it
never does. Keeping freed memory in the process's heap removes both. Measured
(docs/benchmarks.md): a 37-minute CPU reproduction took 33.5 M minor page faults, most of
them in the linear probes' float64 buffers of 100-400 MB, and 0.53 M with this setting;
in a fresh process that had not yet raised glibc's threshold, stacked training steps ran
1.35x (encoders) and 1.38x (TopK SAEs) faster (benchmarks/bench_allocator.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # <malloc.h>: free memory at the heap's top kept before trimming
_M_MMAP_THRESHOLD = -3  # <malloc.h>: requests at least this large get their own mapping


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Serve allocations below `mmap_threshold` bytes from the heap and keep up to
    `trim_threshold` bytes of freed memory for reuse. Process-wide; for programs, not
    libraries (the CLI calls it). Returns False where the C library is not glibc.

    Call it once the program has imported its numeric libraries: measured on the 2-core CPU,
    in a process that had imported only torch, 1 to 6 of 20 freed-and-reallocated 64 MB blocks
    were still mapped afresh (16,384 to 114,688 page faults); with the training modules (and
    with them scikit-learn) imported first, 0 or 1 (tests/test_allocator.py)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # no libc found, or no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
