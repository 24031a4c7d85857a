"""Which CPU a benchmark ran on, in one line printed beside every table.

The figures depend on it more than on anything else here: the same int8 export measured 0.61x
of float on an AVX2-only EPYC and 0.36x on one with AVX-512 VNNI. So each benchmark prints the
CPU model (with its family and model numbers, which a virtual machine's "AMD EPYC" name
hides), the cores this process may use, and the instruction sets that decide these numbers.
"""

from __future__ import annotations

import os
import platform

# Flags of /proc/cpuinfo that decide convolution speed, by the name tables use.
FLAGS = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),  # int8 dot products
    "BF16": ("avx512_bf16", "amx_bf16"),  # bfloat16 dot products
    "AMX": ("amx_tile",),
}


def parse_cpuinfo(text: str) -> dict:
    """Model name, family, model number and flags of the first processor in ``text``."""
    fields: dict = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return {
        "model": fields.get("model name", platform.processor() or platform.machine()),
        "family": fields.get("cpu family"),
        "model_number": fields.get("model"),
        "flags": set(fields.get("flags", "").split()),
    }


def describe_cpu(cpuinfo: str | None = None, cores: int | None = None) -> str:
    """``"CPU: AMD EPYC (family 25, model 17), 2 cores; AVX2 yes, AVX-512 yes, VNNI yes, ..."``.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read when None; empty where there is none).
        cores: the cores this process may run on (``os.sched_getaffinity`` when None).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            cpuinfo = ""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = parse_cpuinfo(cpuinfo)
    numbers = ""
    if info["family"] is not None:
        numbers = f" (family {info['family']}, model {info['model_number']})"
    flags = ", ".join(
        f"{name} {'yes' if any(f in info['flags'] for f in names) else 'no'}"
        for name, names in FLAGS.items()
    )
    return f"CPU: {info['model']}{numbers}, {cores} cores; {flags}"


if __name__ == "__main__":
    print(describe_cpu())
