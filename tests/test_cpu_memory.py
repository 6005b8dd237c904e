"""utils/cpu_memory.py: after keep_freed_memory(), large tensors come from the reusable heap, not fresh mmap pages."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import ctypes, ctypes.util, json, sys
import torch
from utils.cpu_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
tensor = torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)
alive = libc.mallinfo2()
del tensor
freed = libc.mallinfo2()
print(json.dumps({"applied": applied, "mmapped_alive": alive.hblkhd, "heap_after_free": freed.arena}))
"""


def _probe(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")),
                                                                         "mallinfo2"), reason="glibc only")
@pytest.mark.slow
def test_large_tensors_are_kept_in_the_heap_after_keep_freed_memory():
    default, kept = _probe("default"), _probe("keep")
    size = 64 * 2**20
    assert default["mmapped_alive"] >= size  # glibc's default: a fresh mapping, unmapped on free
    assert kept["applied"] is True
    assert kept["mmapped_alive"] < size and kept["heap_after_free"] >= size  # from the heap, kept after the free
