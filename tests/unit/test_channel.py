"""The host's sockets: private from the first moment, handed to the sandbox's user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest

from execloop.sandboxes.channel import private_unix_listener

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("owner", [None, (1000, 1000)])
async def test_listeners_are_mode_0600_and_owned_by_the_sandbox_user(
    tmp_path: Path, owner: tuple[int, int] | None
) -> None:
    os.chmod(tmp_path, 0o711)
    path = tmp_path / "ctl.sock"
    listener = await private_unix_listener(path, owner=owner)
    try:
        info = path.stat()
        async with await anyio.connect_unix(path):
            pass
    finally:
        await listener.aclose()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600  # never group- or world-writable
    expected = owner if owner is not None and os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert (info.st_uid, info.st_gid) == expected
    assert os.listdir(tmp_path) == ["ctl.sock"]  # no staging folder left
