"""`execloop bench sandboxes` in a tiny mode, through the real CLI on the real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from execloop.images import python_image_tag
from execloop.runtime.benchmarks.floor import start_floor

# fast contenders of each group: execloop, peers (one of them from the `bench` extra), references
ONLY = [
    "execloop-docker",
    "execloop-local",
    "llm-sandbox",
    "smolagents-local",
    "docker-run",
    "floor",
]
LATENCIES = ("cold_start_ms", "exec_ms", "teardown_ms")


def test_a_tiny_run_measures_every_contender_and_leaves_no_container(
    tmp_path: Path, docker_client: Any
) -> None:
    md, png = tmp_path / "table.md", tmp_path / "plot.png"
    argv = [sys.executable, "-m", "execloop.runtime.cli", "bench", "sandboxes", "--json"]
    argv += ["--rounds", "1", "--warmup-rounds", "0", "--execs", "2", "--throughput-rounds", "1"]
    argv += ["--throughput-execs", "2", "--only", ",".join(ONLY), "--md", str(md)]
    argv += ["--plot", str(png)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert {"run_id", "date", "machine", "image", "settings", "left_behind"} <= set(result)
    rows = {row["key"]: row for row in result["contenders"]}
    assert sorted(rows) == sorted(ONLY)  # every one listed, none dropped
    for key, row in rows.items():
        if row["status"] == "unavailable":
            assert row["reason"], key
            continue
        assert row["status"] == "ok", row
        for latency in LATENCIES:
            assert row[latency]["n"] >= 1 and row[latency]["p50_ms"] >= 0, (key, latency)
        assert row["two_session_execs_per_s"] > 0, key
        assert isinstance(row["keeps_state"], bool), key
    assert rows["execloop-docker"]["status"] == "ok"
    assert rows["execloop-docker"]["keeps_state"] is True
    assert rows["docker-run"]["keeps_state"] is False  # measured, not declared
    assert rows["execloop-docker"]["idle_memory_mib"] > 0  # read from docker stats
    assert rows["smolagents-local"]["isolation"].startswith("no isolation")
    assert result["left_behind"] == []
    mine = {"label": f"execloop.bench.run={result['run_id']}"}
    assert docker_client.containers.list(all=True, filters=mine) == []
    table = md.read_text()
    assert "| execloop docker |" in table and "cold start" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_floor_whose_container_went_away_fails_its_next_exec_at_once(
    docker_client: Any,
) -> None:
    """Removed between two execs (another run's clean-up once did): the next exec raises
    instead of waiting for a reply for ever, and closing it still succeeds."""
    labels = {"org.execloop.bench": "floor-went-away-test"}

    async def scenario() -> tuple[bytes, str]:
        floor = await start_floor(docker_client, python_image_tag(), labels, via="stdio")
        try:
            first = await floor.exec("print(1+1)")
            await anyio.to_thread.run_sync(lambda: floor.container.remove(force=True))
            await anyio.sleep(1)  # the attach stream has seen its end: no exec is waiting
            with anyio.fail_after(10):  # the bug this guards against waited for ever
                with pytest.raises(ConnectionError) as lost:
                    await floor.exec("print(1)")
        finally:
            await floor.aclose()
        return first, str(lost.value)

    first, why = anyio.run(scenario)
    assert first == b"2\n"
    assert "the floor REPL went away" in why
