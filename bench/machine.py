"""What a benchmark ran on, for the header of each result."""

from __future__ import annotations

import datetime as _dt
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """One line: date, cores, CPU model, GPU (if any), torch version and threads."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} | {os.cpu_count()} cores, {cpu_model()} | {gpu} | "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
