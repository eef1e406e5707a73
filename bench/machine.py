"""The machine a benchmark ran on: CPU model, cores, and the vector extensions that int8 kernels choose by."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

# Linux /proc/cpuinfo flag (x86-64 'flags', ARM64 'Features') -> the extension's usual name
EXTENSIONS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
              "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8", "asimd": "NEON", "asimddp": "NEON dot product",
              "i8mm": "I8MM", "sve": "SVE"}


def cpu() -> dict:
    """{"model", "machine", "cores", "extensions"}: extensions by their usual names (EXTENSIONS), as the OS reports."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("flags", "features"):
                flags |= set(value.split())
            elif key in ("model name", "hardware") and value.strip():
                model = value.strip()
    elif platform.system() == "Darwin":  # macOS: the brand string, and NEON on every ARM64 Mac
        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5).stdout.strip() or model
        except OSError:
            pass
        if platform.machine() == "arm64":
            flags.add("asimd")
    return {"model": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "extensions": [name for flag, name in EXTENSIONS.items() if flag in flags]}


def describe(info: dict | None = None) -> str:
    """'AMD EPYC (x86_64, 2 cores; AVX2, FMA, AVX-512, AVX-512 VNNI)'."""
    info = info or cpu()
    return (f"{info['model']} ({info['machine']}, {info['cores']} cores; "
            f"{', '.join(info['extensions']) or 'no vector extension reported'})")


def update_readme(section: str, text: str, path: Path = Path(__file__).resolve().parent.parent / "README.md") -> None:
    """Rewrite the README's lines between <!-- section:start --> and <!-- section:end --> with text: a benchmark's
    table in the README cannot drift from the benchmark's results."""
    from outputs import write_text

    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if not path.exists():
        return
    readme = path.read_text()
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        write_text(path, head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])
