"""Text from models, sandboxes and files made safe to show on a terminal.

Anything a script prints or a model writes may hold escape sequences that move the cursor,
rewrite the title, hide text or (on some terminals) answer back as if typed. What the CLI shows
a person keeps newlines and tabs and spells every other control character out (``\\x1b``), so
it is visible and inert; machine output (``--json``) is never passed through here.
"""

from __future__ import annotations

__all__ = ["one_line", "printable"]

_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))  # embeddings, overrides, isolates
_CONTROLS = (*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI)
_SPELLED = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _CONTROLS
    if chr(code) not in "\n\t"
}


def printable(text: str) -> str:
    """``text`` with control characters other than newline and tab spelled out (``\\x1b``);
    a Windows line end stays a line end."""
    return text.replace("\r\n", "\n").translate(_SPELLED)


def one_line(text: str) -> str:
    """A message on one printable line: lines joined with ``; `` (or a space after a colon),
    runs of whitespace collapsed."""
    joined = ""
    for line in text.splitlines():
        line = " ".join(printable(line).split())
        if line and joined:
            joined += (" " if joined.endswith(":") else "; ") + line
        elif line:
            joined = line
    return joined
