"""The bench scripts' one writer of BENCHMARKS.md: a section is replaced in place or appended,
and every other section stays byte for byte."""

from __future__ import annotations

from pathlib import Path

from bench._benchmarks_md import HEADER, write_section


def test_a_section_is_replaced_in_place_and_the_others_stay(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Upload\n\nupload figures\n\n## Value\n\nold value\n\n## Stability\n\nstable\n")

    write_section(path, "Value", "## Value\n\nnew value\n\n\n")

    assert path.read_text() == (
        "# Benchmarks\n\n## Upload\n\nupload figures\n\n## Value\n\nnew value\n\n## Stability\n\nstable\n"
    )


def test_a_new_section_is_appended_and_a_missing_file_gets_the_header(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"

    write_section(path, "Anchors", "## Anchors\n\nfirst run")
    write_section(path, "Value", "## Value\n\nfigures")
    write_section(path, "Anchors", "## Anchors\n\nsecond run")

    assert path.read_text() == HEADER + "\n## Anchors\n\nsecond run\n\n## Value\n\nfigures\n"
