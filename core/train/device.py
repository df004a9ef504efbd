"""Which device trains: CUDA, then Apple MPS, then the CPU, unless the person says otherwise."""

from __future__ import annotations

import os

import torch

from core.errors import ConfigError


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve a device preference to a ``torch.device``.

    Args:
        preference: ``auto``, ``cpu``, ``cuda`` or ``mps``. ``auto`` honours the
            ``STUDIO_DEVICE`` environment variable, then picks CUDA, MPS, CPU in that order.

    Returns:
        The device.

    Raises:
        ConfigError: an explicit device that is not available here.
    """
    if preference == "auto":
        preference = os.environ.get("STUDIO_DEVICE", "auto") or "auto"
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; choose 'auto' or 'cpu'.")
    if preference == "mps" and not _mps_available():
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available; choose 'auto' or 'cpu'.")
    if preference not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device '{preference}' is not known; choose auto, cpu, cuda or mps.")
    return torch.device(preference)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device | None = None) -> str:
    """A short human description such as ``CPU (2 threads)`` or ``CUDA: NVIDIA H100``."""
    device = device or pick_device("auto")
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16), so bf16 autocast pays off."""
    # private probes of torch.cpu; getattr keeps a torch build without one of them working
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


def training_precision(device: torch.device, precision: str = "auto") -> str:
    """What a training run on ``device`` computes its forward pass in: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is mixed precision wherever the hardware computes it natively: bf16 (or fp16 with
    loss scaling) on CUDA, and bf16 on a CPU with AMX or AVX-512 BF16 units, where it trains
    1.5-3x faster with the same accuracy within a budget (BENCHMARKS.md); fp32 elsewhere.
    Evaluation and inference stay fp32 on the CPU (:func:`amp_dtype`).

    Args:
        device: where the model trains.
        precision: ``auto``, ``fp32`` or ``bf16`` (a ``TrainConfig.precision``).

    Raises:
        ConfigError: ``bf16`` on a device that cannot run it fast.
    """
    if precision == "auto" and device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return _NAMES[amp_dtype(device, precision)]


def training_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of :func:`training_precision`, or None for fp32."""
    return _DTYPES[training_precision(device, precision)]


def planned_precision(device_preference: str, precision: str = "auto") -> tuple[torch.device, str] | None:
    """Where and in what precision a run with these settings would train on this machine.

    Args:
        device_preference: a ``TrainConfig.device``.
        precision: a ``TrainConfig.precision``.

    Returns:
        ``(device, "fp32" | "bf16" | "fp16")``, or None when this machine lacks the device or
        its bf16 units (a run planned here for a cluster's GPU: its worker decides).
    """
    try:
        device = pick_device(device_preference)
        return device, training_precision(device, precision)
    except ConfigError:
        return None


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for mixed precision on this device, or None where it does not apply
    (inference and evaluation; training resolves ``auto`` with :func:`training_precision`).

    bf16 needs no loss scaling; fp16 (older GPUs) does, which GradScaler handles.

    Args:
        device: where the model runs.
        precision: ``auto`` (mixed on CUDA, fp32 elsewhere), ``fp32`` (never mixed) or
            ``bf16`` (bf16 autocast on CUDA, or on a CPU with native bf16 units).

    Raises:
        ConfigError: ``bf16`` on a device that cannot run it fast.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_bf16()
        if native:
            return torch.bfloat16
        raise ConfigError(
            f"precision 'bf16' needs a GPU or CPU with native bf16 support, and this {device.type} has none; "
            "choose precision 'auto'.")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
