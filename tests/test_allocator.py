"""allocator.keep_freed_memory: freed blocks are reused instead of re-mapped from the kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from implicit_em import allocator

# Allocates and frees a 64 MB tensor 20 times after one warm-up, and prints the minor page
# faults of those 20. glibc maps blocks over 32 MB afresh each time by default (16,384
# faults per 64 MB); with keep_freed_memory they come from the heap, already faulted in. The
# child imports the training modules first, as the CLI's commands do (see keep_freed_memory).
CHILD = """
import resource, sys, torch
import implicit_em.train.loop, implicit_em.probe  # what a training command has loaded
if sys.argv[1] == "keep":
    from implicit_em.allocator import keep_freed_memory
    assert keep_freed_memory()
torch.ones(16 << 20).sum()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 << 20).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_memory_is_reused_without_page_faults():
    block = 64 * 2**20 // 4096  # pages in one 64 MB block
    keep, default = faults("keep"), faults("default")
    assert default >= 10 * block, default  # the default re-maps (nearly) every block
    assert keep <= 2 * block, keep  # measured: 0 or 1 of the 20 blocks faulted in again


def test_without_mallopt_it_reports_false(monkeypatch):
    def no_libc(name):
        raise OSError("no C library")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False
