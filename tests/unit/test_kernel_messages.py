"""How one execution's iopub messages become an ExecResult's parts (pure, no kernel)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from execloop.sandboxes import ExitReason
from execloop.sandboxes.kernel_messages import OutputCollector, strip_ansi, system_exit_status


def msg(kind: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": kind, "header": {"msg_type": kind}, "content": content}


def collector(keep: int = 1024, limit: int = 1 << 20) -> OutputCollector:
    return OutputCollector(keep=keep, limit=limit)


def test_streams_go_to_their_buffer_and_idle_ends() -> None:
    c = collector()
    c.add(msg("status", execution_state="busy"))
    c.add(msg("stream", name="stdout", text="a\n"))
    c.add(msg("stream", name="stderr", text="warn\n"))
    assert not c.idle
    c.add(msg("status", execution_state="idle"))
    assert (c.stdout.text(), c.stderr.text(), c.idle) == ("a\n", "warn\n", True)
    assert c.outcome() == (0, ExitReason.OK, "")


def test_output_is_head_and_tail_and_the_limit_counts_everything() -> None:
    c = collector(keep=100, limit=1000)
    for i in range(50):
        c.add(msg("stream", name="stdout", text=f"line {i:02d}\n"))
    assert c.stdout.truncated
    assert c.stdout.text().startswith("line 00\n") and c.stdout.text().endswith("line 49\n")
    assert not c.over_limit
    c.add(msg("display_data", data={"text/html": "x" * 1000}))
    assert c.over_limit


def test_a_frozen_collector_keeps_nothing_more() -> None:
    c = collector()
    c.frozen = True
    c.add(msg("stream", name="stdout", text="late\n"))
    c.add(msg("error", ename="KeyboardInterrupt", evalue="", traceback=[]))
    assert c.stdout.text() == "" and c.error is None


def test_an_error_is_its_traceback_without_colours() -> None:
    c = collector()
    c.add(
        msg(
            "error",
            ename="ValueError",
            evalue="boom",
            traceback=["Traceback (most recent call last):\n", "\x1b[31mValueError\x1b[39m: boom"],
        )
    )
    code, reason, text = c.outcome()
    assert (code, reason) == (1, ExitReason.ERROR)
    assert text == "Traceback (most recent call last):\nValueError: boom\n"


def test_memory_error_is_oom() -> None:
    c = collector()
    c.add(msg("error", ename="MemoryError", evalue="", traceback=["MemoryError"]))
    assert c.outcome()[:2] == (1, ExitReason.OOM)


@pytest.mark.parametrize(
    ("evalue", "expected"),
    [
        ("", (0, "")),
        ("None", (0, "")),
        ("0", (0, "")),
        ("3", (3, "")),
        ("-2", (254, "")),  # what the OS keeps of it, as `python script.py; echo $?` says
        ("256", (0, "")),
        (str(2**100), (255, "")),
        ("True", (1, "")),
        ("False", (0, "")),
        ("bye", (1, "bye\n")),
    ],
)
def test_system_exit_statuses(evalue: str, expected: tuple[int, str]) -> None:
    assert system_exit_status(evalue) == expected
    c = collector()
    c.add(msg("error", ename="SystemExit", evalue=evalue, traceback=["ignored"]))
    code, reason, text = c.outcome()
    assert (code, text) == expected
    assert reason is (ExitReason.OK if expected[0] == 0 else ExitReason.ERROR)


def test_rich_outputs_are_returned_for_saving_and_a_result_is_printed() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    c = collector()
    saved = c.add(
        msg(
            "display_data",
            data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"},
        )
    )
    assert saved == [(".png", png)]
    assert c.stdout.text() == ""  # a display's repr is dropped when something richer came
    saved = c.add(msg("execute_result", data={"text/html": ["<b>", "x</b>"], "text/plain": "X"}))
    assert saved == [(".html", b"<b>x</b>")]
    assert c.stdout.text() == "X\n"  # a result's repr is what a REPL prints
    assert c.add(msg("display_data", data={"text/plain": "plain only"})) == []
    assert c.stdout.text() == "X\nplain only\n"


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[0;31mred\x1b[0m \x1b[1mbold") == "red bold"


def test_the_exit_hook_message_records_the_status_and_shows_nothing() -> None:
    from execloop.sandboxes.kernel_messages import EXIT_MIME

    c = collector()
    assert c.add(msg("display_data", data={EXIT_MIME: {"status": 3}}, metadata={})) == []
    c.add(msg("display_data", data={EXIT_MIME: "garbage"}, metadata={}))
    assert c.exit_status == 3 and c.stdout.text() == ""


def test_the_kernels_trouble_message_is_recorded_frozen_or_not_and_shows_nothing() -> None:
    from execloop.sandboxes.kernel_messages import HEALTH_MIME

    c = collector()
    c.frozen = True  # it comes after an interrupted cell too
    oom = {"reason": "oom", "why": "no memory\x1b[2J"}
    assert c.add(msg("display_data", data={HEALTH_MIME: oom}, metadata={})) == []
    assert c.trouble == (ExitReason.OOM, "no memory?[2J") and c.stdout.text() == ""
    c.add(msg("display_data", data={HEALTH_MIME: {"reason": "error", "why": ""}}, metadata={}))
    assert c.trouble == (ExitReason.ERROR, "the kernel cannot go on")
    c = collector()
    c.add(msg("display_data", data={HEALTH_MIME: "garbage", "text/plain": "x"}, metadata={}))
    assert (c.trouble, c.stdout.text()) == (None, "x\n")
