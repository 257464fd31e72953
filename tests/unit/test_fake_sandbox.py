"""``execloop.testing.FakeSandbox`` keeps the Sandbox contract: the backend-independent
assertions of tests/contract/test_contract.py (files in and out, bounded manifests, refused
arguments, a live session after a refusal), plus what every backend does on close."""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop import ConfigError, SandboxClosedError, TransferError
from execloop.sandboxes import ExecResult, ExitReason, SandboxSpec
from execloop.testing import FakeBackend, FakeRun, FakeSandbox

pytestmark = pytest.mark.anyio


def _summing(run: FakeRun) -> str:
    """What the contract's files test script does: sum in/data.txt into out.txt."""
    values = [int(line) for line in run.files["in/data.txt"].decode().split()]
    run.files["out.txt"] = str(sum(values)).encode()
    return ""


async def test_files_in_and_out(tmp_path: Path) -> None:
    async with FakeSandbox(handler=_summing) as sandbox:
        await sandbox.upload({"in/data.txt": "3\n4\n"})
        run = await sandbox.exec("sum the file")
        assert run.exit_reason is ExitReason.OK, run.stderr
        assert await sandbox.read_file("out.txt") == b"7"
        manifest = {a.path: a for a in await sandbox.artifacts()}
        copied = await sandbox.download("in", tmp_path / "copy")
    assert set(manifest) >= {"in/data.txt", "out.txt"}
    assert manifest["out.txt"].size_bytes == 1
    assert [p.read_text() for p in copied] == ["3\n4\n"]
    assert copied == [tmp_path / "copy" / "data.txt"]  # relative to the folder, as the helper
    assert sandbox.downloads == ["out.txt", "in"]


async def test_a_host_folder_uploads_with_its_layout(tmp_path: Path) -> None:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "a.csv").write_text("x\n")
    async with FakeSandbox() as sandbox:
        await sandbox.upload(tmp_path / "data", "data")
        assert await sandbox.read_file("data/sub/a.csv") == b"x\n"


async def test_many_small_files_give_a_bounded_manifest() -> None:
    files = {f"f{i:06d}": b"ab" for i in range(5000)}
    async with FakeSandbox(files=files) as sandbox:
        manifest = await sandbox.manifest()
        listed = await sandbox.artifacts()
        head = await sandbox.manifest(limit=3)
        with pytest.raises(ConfigError, match="out of range"):
            await sandbox.manifest(limit=-1)
    assert (manifest.total_files, manifest.total_bytes) == (5000, 10_000)
    assert len(manifest.files) == 1000 and manifest.truncated
    assert listed == manifest.files
    assert [a.path for a in head.files] == ["f000000", "f000001", "f000002"]
    assert manifest.summary() == "5000 files, 9.8 KiB (first 1000 listed)"


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf")])
async def test_bad_timeouts_are_refused_and_the_session_lives(timeout: float) -> None:
    async with FakeSandbox() as sandbox:
        with pytest.raises(ConfigError, match="positive, finite"):
            await sandbox.exec("print(1)", timeout=timeout)
        with pytest.raises(ConfigError, match="positive, finite"):
            await sandbox.exec_file("main.py", timeout=timeout)
        after = await sandbox.exec("print(kept)")
    assert after.ok and len(sandbox.runs) == 1


async def test_names_no_file_system_can_hold_are_refused() -> None:
    async with FakeSandbox() as sandbox:
        with pytest.raises(ConfigError, match="NUL byte"):
            await sandbox.upload({"in\0put.txt": "x"})
        with pytest.raises(ConfigError, match="at most 255"):
            await sandbox.upload({"n" * 300: "x"})
        with pytest.raises(ConfigError, match="must be bytes or str"):
            await sandbox.upload({"x": 42})  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match="NUL byte"):
            await sandbox.read_file("in\0put.txt")
        with pytest.raises(TransferError, match="outside the workspace") as caught:
            await sandbox.read_file("../etc/passwd")
        manifest = await sandbox.manifest()
    assert caught.value.path == "../etc/passwd"
    assert manifest.total_files == 0


async def test_a_missing_path_is_a_transfer_error_with_its_path() -> None:
    async with FakeSandbox() as sandbox:
        with pytest.raises(TransferError) as caught:
            await sandbox.read_file("result.json")
        with pytest.raises(TransferError):
            await sandbox.manifest("nothing")
    assert (caught.value.path, caught.value.sandbox_id) == ("result.json", sandbox.session_id)


async def test_an_upload_that_cannot_fit_is_refused_before_anything_is_written() -> None:
    async with FakeSandbox(SandboxSpec(workspace_size="1m")) as sandbox:
        with pytest.raises(TransferError, match="workspace_size"):
            await sandbox.upload({"small": b"x", "big": b"x" * 2 * 1024**2})
        assert (await sandbox.manifest()).total_files == 0


async def test_exec_file_runs_a_workspace_file_and_a_missing_one_is_data() -> None:
    seen: list[tuple[str | None, tuple[str, ...], str]] = []

    async def handler(run: FakeRun) -> ExecResult:
        seen.append((run.path, run.args, run.code))
        return ExecResult(exit_code=1, exit_reason=ExitReason.ERROR, stderr="boom", duration_s=0)

    async with FakeSandbox(handler=handler) as sandbox:
        await sandbox.upload({"main.py": "print(1)"})
        failed = await sandbox.exec_file("main.py", args=["--n", "2"])
        missing = await sandbox.exec_file("other.py")
    assert seen == [("main.py", ("--n", "2"), "print(1)")]
    assert (failed.exit_reason, failed.stderr) == (ExitReason.ERROR, "boom")
    assert (missing.exit_reason, missing.exit_code) == (ExitReason.ERROR, 2)


async def test_a_closed_or_unstarted_sandbox_refuses_every_call() -> None:
    sandbox = FakeSandbox()
    with pytest.raises(SandboxClosedError, match="never started"):
        await sandbox.exec("1")
    async with sandbox:
        await sandbox.upload({"a": "1"})
    await sandbox.close()  # idempotent
    assert sandbox.closed
    calls = [
        sandbox.exec("1"),
        sandbox.exec_file("a"),
        sandbox.upload({"b": "2"}),
        sandbox.read_file("a"),
        sandbox.manifest(),
        sandbox.start(),
    ]
    for call in calls:
        with pytest.raises(SandboxClosedError) as caught:
            await call
        assert caught.value.sandbox_id == sandbox.session_id


async def test_the_backend_remembers_its_sandboxes_and_counts_fetches() -> None:
    backend = FakeBackend(lambda run: run.files.update({"result.json": b"{}"}))
    for _ in range(2):
        async with backend(SandboxSpec()) as sandbox:
            await sandbox.exec("write it")
            await sandbox.read_file("result.json")
    assert len(backend.sandboxes) == 2 and all(s.closed for s in backend.sandboxes)
    assert backend.fetched("result.json") == 2 and backend.fetched("./result.json") == 2
