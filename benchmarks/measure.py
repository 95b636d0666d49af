"""Measuring tools for benchmarks: a fresh process per configuration, peak memory, synchronised clocks.

Peak memory is only comparable side by side when every configuration starts from the same state. On a CPU,
a process's resident set never shrinks reliably after large tensors are freed (the allocator keeps pages),
so each configuration runs in its own child process, forked from a parent that has already imported the
libraries and built the shared (frozen) models: every child starts from the same resident set, and building
Gemma 3 270M's random weights once instead of once per configuration saves ~15 s each. The parent must not
have touched CUDA (a forked child cannot use a CUDA context it inherits), so on a GPU all device work happens
in the children too; and it must have run torch single-threaded (`torch.set_num_threads(1)`) if children are
to use several threads: once OpenMP's thread pool exists in a parent, a forked child that uses OpenMP with
more than one thread hangs (seen here with torch 2.11).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in a forked child process and return its (picklable) result.

    The child inherits the parent's memory copy-on-write, so models built in the parent are shared, not
    copied, until the child writes to them. An exception in the child is raised here with its traceback.
    """
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def target() -> None:
        try:
            # one thread unless `fn` asks for more: if this parent ever ran OpenMP with several threads, a
            # child that does too hangs (see the module docstring); `fn` may raise it when the parent did not
            torch.set_num_threads(1)
            send.send(("ok", fn(*args)))
        except BaseException:  # noqa: BLE001 - everything goes back to the parent, which raises it
            send.send(("error", traceback.format_exc()))
        finally:
            send.close()

    child = ctx.Process(target=target)
    child.start()
    send.close()
    try:
        status, value = recv.recv()
    except EOFError:  # killed (out of memory, a signal) before it could answer
        child.join()
        raise RuntimeError(f"benchmark child died with exit code {child.exitcode}") from None
    child.join()
    if status == "error":
        raise RuntimeError(f"benchmark child failed:\n{value}")
    return value


class PeakMemory:
    """Peak memory of this process since `reset()`, in MiB.

    CPU: the resident set's high-water mark (VmHWM, reset through /proc/self/clear_refs), so weights, the
    libraries and every transient count, as a user's `top` would show them. CUDA: the caching allocator's
    `max_memory_allocated` (tensors only; the CUDA context and cached free blocks are left out).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS to the current RSS
                f.write("5")

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _status_kib("VmHWM") / 1024

    def current_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        return _status_kib("VmRSS") / 1024


def _status_kib(key: str) -> int:
    """A `kB` field of /proc/self/status (Linux)."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} field")


class Clock:
    """A timer for `device`, read as `clock()` in seconds.

    CUDA: wall time after the GPU has finished its queued work (kernels run asynchronously). CPU with one
    thread: the CPU time of this process, which equals wall time when the process has its core to itself,
    but which other jobs sharing the machine's cores do not inflate (on a loaded 2-core machine wall times of
    the same step varied 2×). CPU with several threads: wall time (CPU time would add the threads up).
    """

    def __init__(self, device: torch.device, threads: int) -> None:
        self.device = device
        self.cpu_time = device.type == "cpu" and threads == 1
        self.kind = "CPU time of the process" if self.cpu_time else "wall time"

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.process_time() if self.cpu_time else time.perf_counter()
