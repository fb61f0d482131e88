"""Device policy: which device, which precision, which memory layout; one place for all three.

``pick_device("auto")`` gives CUDA when present, else Apple's MPS, else the CPU; a device that
is named but absent is a one-line ValueError. ``resolve_precision`` and ``autocast_context``
choose bf16 where the hardware has it, fp16 with a gradient scaler on older GPUs (a T4), else
fp32; ``resolve_channels_last`` picks NHWC where it makes convolutions faster.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else Apple's MPS, else the CPU. A device that is
    named but absent (``"cuda"`` without a GPU, ``"cuda:3"`` on a machine with one) is a
    ValueError that says what this machine has."""
    if str(device) == "auto":
        return torch.device(
            "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"unknown device {str(device)!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from e
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has no usable CUDA GPU: "
                "use --device auto or cpu"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif dev.type == "mps" and not _mps_available():
        raise ValueError(
            f"device {str(device)!r} asked for, but Apple's MPS is not available here: "
            "use --device auto or cpu"
        )
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device {str(device)!r} is not supported: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return dev


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 arithmetic is fast here: CUDA GPUs of compute capability 8.0 (Ampere) and
    newer, and CPUs with bf16 instructions (AVX-512 BF16 or AMX). Older GPUs (T4, V100) can
    emulate bf16, slowly; they are not counted."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_supported`, else ``"fp16"`` on CUDA (with a
    GradScaler in training: the fast path of a T4 or V100), else ``"fp32"``."""
    if precision != "auto":
        return precision
    if bf16_supported(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def resolve_channels_last(device: torch.device, channels_last: bool | str = "auto") -> bool:
    """``"auto"`` -> NHWC on CPUs and CUDA GPUs, where it makes convolutions faster."""
    return device.type in ("cpu", "cuda") if channels_last == "auto" else bool(channels_last)


def autocast_context(device: torch.device, precision: str):
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA GPU; use 'bf16' or 'fp32' on the CPU")
    if precision == "bf16" and not bf16_supported(device):
        raise ValueError(
            f"this {device.type} does not support bf16 well; use precision='auto' or 'fp32'"
        )
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def hardware_name(device: torch.device) -> str:
    """A short human description of the device, for figure captions."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = torch.get_num_threads()
    return f"{cpu}, {n} thread{'s' if n != 1 else ''}"
