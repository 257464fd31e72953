"""`execloop mcp`'s options: addresses, the token rule, and who configures logging (nothing is
served here)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from execloop.runtime.cli import cli
from execloop.runtime.cli_boundary import configure_logging
from execloop.runtime.mcp_cli import is_loopback, parse_listen
from execloop.runtime.mcp_server import build_server


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8765", ("127.0.0.1", 8765)), ("[::1]:9", ("::1", 9)), ("h:1", ("h", 1))],
)
def test_listen_addresses_parse(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8765", ":8765", "host:", "host:0", "host:70000", "h:x"])
def test_bad_listen_addresses_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(value)


def test_loopback_is_told_apart() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.1", "::", "example.org"]))


@pytest.mark.parametrize("address", ["0.0.0.0:8765", "[::]:8765", "myhost.lan:8765"])
def test_a_non_loopback_address_needs_a_token(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXECLOOP_MCP_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["mcp", "--http", address])
    assert result.exit_code == 2
    assert "--token or EXECLOOP_MCP_TOKEN" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--http", "nowhere"], "--http"),
        (["--token", "t"], "--token applies to --http only"),
        (["--memory", "lots"], "--memory"),
        (["--model", "nonsense"], "--model"),
        (["--session-ttl", "0"], "--session-ttl"),
    ],
)
def test_bad_options_name_the_flag(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, ["mcp", *args])
    assert result.exit_code == 2
    assert says in result.output


@contextmanager
def bare_root_logger() -> Iterator[logging.Logger]:
    """The root logger as a fresh process has it (pytest's capture handlers set aside: they
    are added when the test's body starts, so this runs inside it)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_building_the_server_leaves_the_root_logger_alone() -> None:
    with bare_root_logger() as root:
        build_server()  # MCPServer() alone calls logging.basicConfig (mcp 2.3)
        assert (root.handlers, root.level) == ([], logging.WARNING)


def test_the_cli_shows_the_sdks_warnings_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    mcp = logging.getLogger("mcp")
    saved = mcp.handlers[:]
    with bare_root_logger() as root:
        try:
            configure_logging(verbose=False)
            logging.getLogger("mcp.server.lowlevel").warning("first\nsecond")
        finally:
            mcp.handlers[:] = saved
        assert root.handlers == []
    assert capsys.readouterr().err == "warning: first; second\n"
