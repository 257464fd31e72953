"""Property-based: any SKILL.md, valid or not, loads as a Skill or raises one SkillError
naming the file, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execloop.errors import SkillError
from execloop.runtime.skills import Skill, load_skill

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
YAMLISH = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "name",
    "description",
    "version",
    "inputs",
    "defaults",
    "checks",
    "sandbox",
    "tools",
    "examples",
    "license",
    "metadata",
    "instructions",
    "folder",
    "unknown",
]


def _load(folder: Path, content: bytes) -> Skill | None:
    (folder / "SKILL.md").write_bytes(content)
    try:
        return load_skill(folder)
    except SkillError as exc:
        message = str(exc)
    assert "SKILL.md" in message, message
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "probe"
        folder.mkdir()
        _load(folder, content)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), YAMLISH, max_size=8), st.text(max_size=50))
def test_arbitrary_front_matter(front: dict[str, Any], body: str) -> None:
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n" + body
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "probe"
        folder.mkdir()
        _load(folder, text.encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    checks=st.lists(
        st.dictionaries(
            st.sampled_from(["kind", "expr", "file", "schema", "path", "name", "bogus"]),
            YAMLISH,
            max_size=4,
        ),
        max_size=3,
    ),
    inputs=YAMLISH,
)
def test_near_valid_skills(checks: list[Any], inputs: Any) -> None:
    front = {
        "name": "probe",
        "description": "A probe skill.",
        "version": "1.0.0",
        "inputs": inputs,
        "checks": checks,
    }
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\nDo it.\n"
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "probe"
        folder.mkdir()
        _load(folder, text.encode("utf-8", "surrogatepass"))
