"""The README as a tested document: every python and bash block runs as written.

Each block runs in a fresh folder holding a copy of what the README names (``examples/``,
``skills/``) and the project's ``.venv`` (linked, so ``source .venv/bin/activate`` works), with
that venv first on PATH. Blocks that call an LLM run against the loopback fake of the Messages
API (``ANTHROPIC_BASE_URL``). Blocks tested elsewhere are skipped by heading, and the set-up
commands are excluded by name; ``test_every_block_is_run_or_accounted_for`` keeps that list
honest, so a new block cannot go untested silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropicServer

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV = REPO / ".venv"

# The two set-up commands install the machine (Docker engine, packages, images) and run this
# suite: they are what runs the test, so the test does not run them.
SET_UP = ("scripts/install.sh", "scripts/test.sh")
# Sections whose blocks other tests run as written (nothing runs twice).
TESTED_ELSEWHERE = {
    "### Testing without Docker": "tests/unit/test_readme_examples.py",
    "## MCP server": "tests/contract/test_readme_mcp.py",
    "### AutoGen": "tests/contract/test_readme_executors.py",
    "### smolagents": "tests/contract/test_readme_executors.py",
    "### LangGraph": "tests/contract/test_readme_executors.py",
    "### OpenAI Agents SDK": "tests/contract/test_readme_executors.py",
    # interactive clients on the user's notebooks; the clients themselves are driven there:
    "## Jupyter clients": "tests/contract/test_jupyter_clients.py",
    # Ray binds the machine's address: run there in a private network namespace
    "### Many sub-agents, one machine or a Ray cluster": "tests/contract/test_ray_cluster.py",
    # the pipeline takes 90 s: its test runs the same example and checks its outputs
    "### Training skills and the post-training pipeline": "tests/contract/test_pipeline.py",
}

_COUNT_ROWS = """\
import csv, json
counts = {}
for row in csv.DictReader(open("orders.csv")):
    counts[row["region"]] = counts.get(row["region"], 0) + 1
json.dump({"rows_per_region": counts}, open("result.json", "w"))
"""
_TAXED_TOTALS = """\
import csv, json
from execloop_tools import tax_rate
totals = {}
for row in csv.DictReader(open("orders.csv")):
    if row["amount"]:
        totals[row["region"]] = totals.get(row["region"], 0.0) + float(row["amount"])
taxed = {r: round(t * (1 + tax_rate(region=r)["rate"]), 2) for r, t in totals.items()}
json.dump(taxed, open("result.json", "w"))
"""
# what the fake model replies to the blocks that call anthropic:... (their section's heading)
REPLIES = {
    "## Sub-agent tasks: the loop": [_COUNT_ROWS],
    "## Broker, tools and the ledger": [_TAXED_TOTALS],
}


@dataclass(frozen=True)
class Block:
    sections: tuple[str, ...]  # the headings it is under, outermost first
    lang: str
    code: str
    line: int

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.sections[-1].lower()).strip("-")
        return f"L{self.line}-{slug}"


def readme_blocks() -> list[Block]:
    blocks, headings, fence = [], {}, None
    lines = README.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if fence is None and (match := re.match(r"(#{1,6}) ", line)):
            level = len(match.group(1))
            headings = {k: v for k, v in headings.items() if k < level} | {level: line}
        elif line.startswith("```"):
            if fence is None:
                fence = (line[3:].strip(), number, [])
            else:
                lang, start, body = fence
                sections = tuple(headings[k] for k in sorted(headings))
                blocks.append(Block(sections, lang, "\n".join(body) + "\n", start))
                fence = None
        elif fence is not None:
            fence[2].append(line)
    return blocks


def _is_set_up(block: Block) -> bool:
    commands = [line.split("#")[0].strip() for line in block.code.splitlines() if line.strip()]
    return commands == list(SET_UP)


def _elsewhere(block: Block) -> str | None:
    return next((TESTED_ELSEWHERE[s] for s in block.sections if s in TESTED_ELSEWHERE), None)


RUN_HERE = [
    b
    for b in readme_blocks()
    if b.lang in ("python", "bash") and not _is_set_up(b) and _elsewhere(b) is None
]


def test_every_block_is_run_or_accounted_for() -> None:
    blocks = [b for b in readme_blocks() if b.lang in ("python", "bash")]
    set_up = [b for b in blocks if _is_set_up(b)]
    assert len(set_up) == 1 and set_up[0].sections[-1] == "## Set up (two commands)"
    for block in blocks:
        where = _elsewhere(block)
        if where is not None:
            assert (REPO / where).is_file(), f"{block.id}: {where} is gone"
    assert {b.id for b in blocks} == {b.id for b in RUN_HERE} | {
        b.id for b in blocks if _is_set_up(b) or _elsewhere(b)
    }
    # each heading skipped here still has a block (a renamed heading would skip nothing)
    for heading in TESTED_ELSEWHERE:
        assert any(heading in b.sections for b in blocks), f"no block under {heading!r}"
    asking = [b for b in RUN_HERE if "anthropic:" in b.code]  # an LLM call: the fake answers
    assert len(asking) == len(REPLIES) and all(_replies(b) for b in asking)


def _replies(block: Block) -> list[str]:
    """The fake's replies for a block that builds an Anthropic model; none for the others."""
    if 'parse_model("anthropic:' not in block.code:
        return []
    return next((REPLIES[s] for s in block.sections if s in REPLIES), [])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("examples", "skills"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


@pytest.mark.parametrize("block", RUN_HERE, ids=[b.id for b in RUN_HERE])
def test_block_runs_as_written(block: Block, folder: Path) -> None:
    with FakeAnthropicServer() as fake:
        replies = _replies(block)
        for script in replies:
            fake.push_reply(script=script)
        env = {
            **os.environ,
            "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(VENV),
            "ANTHROPIC_BASE_URL": fake.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key",
        }
        command = (
            [str(VENV / "bin" / "python"), "-c", block.code]
            if block.lang == "python"
            else ["bash", "-e", "-o", "pipefail", "-c", block.code]
        )
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert done.returncode == 0, f"README line {block.line}:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        if replies:  # the block asked the (fake) model, and its task passed
            assert len(fake.requests) == len(replies) and fake.pending == 0
            assert "passed" in done.stdout
