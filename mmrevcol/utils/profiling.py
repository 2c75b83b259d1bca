"""Measurement helpers shared by every benchmark and analysis tool: device sync, peak memory, timing.

Numbers for README tables come from tools built on these, never from timed tests.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Union

import torch

Device = Union[str, torch.device]


def as_device(device: Device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def sync_device(device: Device) -> None:
    """Wait for the device's queued work, so that a wall-clock reading covers it (no-op on CPU)."""
    device = as_device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss` (Linux)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def reset_peak_rss() -> None:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets the peak resident set size (Linux >= 4.0)


def peak_memory(step: Callable[[], object], device: Device) -> int:
    """Bytes ``step()`` adds at its peak: CUDA allocator peak, or on CPU the process's peak RSS above its start."""
    device = as_device(device)
    sync_device(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync_device(device)
        return torch.cuda.max_memory_allocated(device) - base
    base = rss_bytes()
    reset_peak_rss()
    step()
    return peak_rss_bytes() - base


def time_fn(fn: Callable[[], object], device: Device, iters: int = 10, warmup: int = 2, repeats: int = 3,
            reduce: str = 'min') -> float:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` rounds of ``iters`` calls, each round
    bracketed by device syncs; the fastest round (``reduce='min'``, least disturbed by other load) or the median."""
    device = as_device(device)
    for _ in range(warmup):
        fn()
    rounds: List[float] = []
    for _ in range(repeats):
        sync_device(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync_device(device)
        rounds.append((time.perf_counter() - start) / iters)
    if reduce == 'min':
        return min(rounds)
    if reduce == 'median':
        return statistics.median(rounds)
    raise ValueError(f"reduce must be 'min' or 'median', got {reduce!r}")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def describe_device(device: Optional[Device] = None) -> str:
    """What the numbers were measured on: the GPU's name, or the CPU model, its vector ISA and the thread count."""
    device = as_device(device or 'cpu')
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = 'unknown CPU'
    flags = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and model == 'unknown CPU':
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags') and not flags:
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    isa = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'
    return f'{model} ({isa}, {torch.get_num_threads()} threads)'


def time_interleaved(fns: Dict[str, Callable[[], object]], device: Device, rounds: int = 5,
                     warmup: int = 1) -> Dict[str, float]:
    """Median seconds per call of each function, called in turn round by round after ``warmup`` calls each, so that
    load from elsewhere hits every function alike (for ratios between them)."""
    device = as_device(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            sync_device(device)
            start = time.perf_counter()
            fn()
            sync_device(device)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


#: glibc settings under which a process's peak RSS follows the allocator: freed buffers above 64 KiB are unmapped at
#: once instead of kept for reuse. Must be in the environment when the process starts.
PINNED_MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536', 'MALLOC_TRIM_THRESHOLD_': '0'}


def malloc_pinned() -> bool:
    """This process started with :data:`PINNED_MALLOC_ENV` (CPU peak-memory numbers are meaningful)."""
    return all(os.environ.get(k) == v for k, v in PINNED_MALLOC_ENV.items())


def reexec_with_pinned_malloc() -> None:
    """Restart this process (same interpreter and arguments) with :data:`PINNED_MALLOC_ENV`, unless it has it."""
    if not malloc_pinned():
        env = dict(os.environ, **PINNED_MALLOC_ENV)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def run_json_subprocess(cmd: List[str], pinned_malloc: bool = True) -> dict:
    """Run a measurement in a fresh process (``cmd``), the last line of its stdout being a JSON object; with
    ``pinned_malloc`` under :data:`PINNED_MALLOC_ENV`. A failure raises ``CalledProcessError`` with its stderr."""
    env = dict(os.environ, **PINNED_MALLOC_ENV) if pinned_malloc else dict(os.environ)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
