"""What the CLI shows a person: control characters spelled out, messages on one line."""

from __future__ import annotations

import pytest

from execloop.runtime.terminal import one_line, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, tabs\tand\nnewlines", "plain text, tabs\tand\nnewlines"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: would retitle the window
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # CSI: would clear the screen
        ("\x9b31m", "\\x9b31m"),  # the 8-bit CSI
        ("over\rwrite", "over\\x0dwrite"),  # a bare carriage return hides what came before
        ("windows\r\nline", "windows\nline"),
        ("\x00\x7f", "\\x00\\x7f"),
        ("abc\u202edcba", "abc\\u202edcba"),  # a bidi override reorders what is shown
        ("café ✓ 日本", "café ✓ 日本"),  # printable text is left alone
    ],
)
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_one_line_joins_lines_and_keeps_colons_readable() -> None:
    text = "skill.md: invalid (2 problems):\n  name: bad\n\n  version:   too   short\n"
    assert one_line(text) == "skill.md: invalid (2 problems): name: bad; version: too short"
    assert one_line("a\x1b[31m\nb") == "a\\x1b[31m; b"
    assert one_line("") == ""
