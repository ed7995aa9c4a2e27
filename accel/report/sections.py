"""Generated sections of a shared markdown file (docs/RESULTS.md): each script owns one section
between markers and replaces only that, so that several result scripts can write one file.

A section reads::

    <!-- begin section KEY -->
    ...
    <!-- end section KEY -->
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .files import write_text

__all__ = ["section_text", "replace_section", "sections", "carry_sections", "update_section"]


def _begin(key: str) -> str:
    return f"<!-- begin section {key} -->"


def _end(key: str) -> str:
    return f"<!-- end section {key} -->"


def section_text(key: str, body: str) -> str:
    """``body`` between the markers of section ``key``."""
    return f"{_begin(key)}\n{body.rstrip()}\n{_end(key)}\n"


def sections(text: str) -> dict[str, str]:
    """Every marked section of ``text``: key -> the whole section, markers included.

    >>> sections("intro\\n" + section_text("qat", "## QAT"))
    {'qat': '<!-- begin section qat -->\\n## QAT\\n<!-- end section qat -->\\n'}
    """
    pattern = re.compile(r"<!-- begin section (\S+) -->\n.*?<!-- end section \1 -->\n?", re.S)
    return {m.group(1): m.group(0) if m.group(0).endswith("\n") else m.group(0) + "\n"
            for m in pattern.finditer(text)}


def replace_section(text: str, key: str, body: str) -> str:
    """``text`` with section ``key`` replaced by ``body`` (appended after a blank line when absent).

    >>> replace_section("intro\\n", "qat", "new")
    'intro\\n\\n<!-- begin section qat -->\\nnew\\n<!-- end section qat -->\\n'
    """
    old = sections(text).get(key)
    new = section_text(key, body)
    if old is not None:
        return text.replace(old, new)
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + new


def carry_sections(old_text: str, new_text: str) -> str:
    """``new_text`` with the sections of ``old_text`` that it lacks appended (a script that rewrites
    a whole file keeps the sections that other scripts own)."""
    for key, body in sections(old_text).items():
        if key not in sections(new_text):
            new_text = new_text.rstrip("\n") + "\n\n" + body
    return new_text


def update_section(path: str | os.PathLike, key: str, body: str) -> Path:
    """Replace section ``key`` of the file ``path`` (created when missing), atomically."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    return write_text(path, replace_section(text, key, body), overwrite=True)
