"""The machine line every benchmark prints first: results mean nothing without it."""

import os
import platform
import sys


def describe() -> str:
    """``machine: <cpu model>, <n> cpus, Python <version>``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"machine: {cpu}, {os.cpu_count()} cpus, Python {sys.version.split()[0]}"
