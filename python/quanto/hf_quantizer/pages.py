"""Hands back to the OS the pages of a float weight read from a memory-mapped checkpoint, once it is quantized.

transformers reads a safetensors checkpoint through a memory map and, when the file's dtype is the
model's, gives each weight as a view of that map (no copy). Reading a weight brings its pages into
the process's resident memory, where they stay while the file is mapped, that is until loading
ends: quantizing a 2 GB bf16 checkpoint while loading would peak at the quantized model plus the
whole file. ``madvise(MADV_PAGEOUT)`` on the weight's pages once it is quantized lets the kernel
reclaim them at once. It is only advice and never loses data (clean file pages are re-read from the
file if touched again; modified ones are kept or swapped), so a failure is ignored. Tensors from
torch's allocator are skipped: they are freed with the tensor.
"""

import ctypes
import mmap
import sys

import torch

__all__ = ["release_pages"]

# MADV_PAGEOUT (Linux 5.4+) is 21 on every architecture; Python's mmap names it only when built
# against headers that have it. An older kernel answers EINVAL: the advice is then simply not taken.
_ADVICE = getattr(mmap, "MADV_PAGEOUT", 21)
_madvise = None
if sys.platform.startswith("linux"):
    try:
        _madvise = ctypes.CDLL(None, use_errno=True).madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):
        _madvise = None


def release_pages(t: torch.Tensor) -> bool:
    """Advises the kernel to reclaim the whole pages inside ``t``'s bytes when ``t`` is a contiguous
    CPU view of memory torch did not allocate (a memory-mapped file); True if advice was given."""
    if _madvise is None or t.device.type != "cpu" or not t.is_contiguous() or t.untyped_storage().resizable():
        return False
    page = mmap.PAGESIZE
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    lo, hi = -(-start // page) * page, end // page * page  # only pages no other tensor shares
    if hi <= lo:
        return False
    return _madvise(lo, hi - lo, _ADVICE) == 0


_malloc_trim = None
if sys.platform.startswith("linux"):
    try:
        _malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc
        _malloc_trim.argtypes = [ctypes.c_size_t]
        _malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # another C library (musl): nothing to trim
        _malloc_trim = None


def trim_heap() -> None:
    """Returns the C heap's free pages to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    Quantizing one weight after another frees temporaries of a few MB each (codes before packing,
    canonical data before the kernels' layout) between longer-lived ones; glibc keeps such holes
    for reuse, and over a whole model they add up to hundreds of MB of resident memory."""
    if _malloc_trim is not None:
        _malloc_trim(0)
