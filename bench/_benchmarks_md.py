"""BENCHMARKS.md: each bench script owns one "## <title>" section and rewrites only that one."""

from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nNumbers from `bench/`; each is a ratio to a reference run in the same run.\n"


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the section that starts with "## `title`" in the file at `path` with `section`
    (which starts with that heading), or append it; every other section stays as it was."""
    text = path.read_text() if path.exists() else HEADER
    section = section.rstrip("\n") + "\n"
    # The match ends before the blank line above the next section, which so stays in place.
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")


# The CPU features that decide which kernels the runtimes use (integer and BF16 dot products).
_SHOWN_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimddp", "i8mm")


def cpu_line() -> str:
    """The CPU a bench ran on, for its heading: the model name with the features that decide
    the variants' speed ("Intel(R) Xeon(R) Processor (x86_64: avx2, ..., amx_bf16)")."""
    from workers.engine.hardware import cpu_features, cpu_model

    arch, flags = cpu_features()
    shown = [flag for flag in _SHOWN_CPU_FLAGS if flag in flags]
    return f"{cpu_model()} ({arch}{': ' + ', '.join(shown) if shown else ''})"
