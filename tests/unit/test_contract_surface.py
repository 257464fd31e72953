"""What runtime/ may know of a sandbox: the contract (capabilities, control_dir), never a
backend's name or module; and each backend refuses a spec written for another."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import anyio
import pytest

from execloop.errors import ConfigError
from execloop.runtime.bridge import ToolBridge, ToolRegistry
from execloop.sandboxes import BACKENDS, Capability, Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.pool import PooledSandbox, PoolSet

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
# Modules that are one backend (or its channel or provisioner); placements and the contract
# are not: runtime/ may use those.
BACKEND_MODULES = {module for module, _ in BACKENDS.values()} | {
    "execloop.sandboxes.stateful",
    "execloop.sandboxes.kernel_provisioners",
    "execloop.sandboxes.container_provisioner",
    "execloop.sandboxes.bubblewrap_provisioner",
}


def backend_mentions(source: str) -> list[str]:
    """Backend names as string literals, and imports of backend modules, in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in BACKENDS:
            found.append(f"line {node.lineno}: the literal {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            found += [f"line {node.lineno}: imports {name}" for name in names & BACKEND_MODULES]
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names} & BACKEND_MODULES
            found += [f"line {node.lineno}: imports {name}" for name in names]
    return found


def test_the_scan_finds_names_and_imports() -> None:
    source = (
        "from execloop.sandboxes.docker_backend import DockerSandbox\n"
        "from execloop.sandboxes import local_backend\n"
        "import execloop.sandboxes.jupyter_backend\n"
        "if spec.backend == 'restricted': pass\n"
        "from execloop.sandboxes import Capability\n"
        "name = 'docker daemon'\n"
    )
    assert backend_mentions(source) == [
        "line 1: imports execloop.sandboxes.docker_backend",
        "line 2: imports execloop.sandboxes.local_backend",
        "line 3: imports execloop.sandboxes.jupyter_backend",
        "line 4: the literal 'restricted'",
    ]


def test_runtime_names_no_backend_and_imports_no_backend_module() -> None:
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) > 30
    mentions = {
        str(path.relative_to(RUNTIME)): [where.partition(": ")[2] for where in found]
        for path in files
        if (found := backend_mentions(path.read_text(encoding="utf-8")))
    }
    assert mentions == ALLOWED


# Literals that spell a backend's name without naming the backend (each says what it is).
ALLOWED = {
    # the Ray address keyword of `--ray local` (start a cluster on this machine)
    "ray_cluster.py": ["the literal 'local'"],
}


def backend_class(name: str) -> type[Sandbox]:
    module, cls = BACKENDS[name]
    found: type[Sandbox] = getattr(importlib.import_module(module), cls)
    return found


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("other", sorted(BACKENDS))
def test_each_backend_refuses_a_spec_naming_another(name: str, other: str) -> None:
    if name == other:
        return
    cls = backend_class(name)
    with pytest.raises(ConfigError, match=rf"{cls.__name__} runs backend='{name}'") as raised:
        cls(SandboxSpec(backend=other))  # type: ignore[arg-type, call-arg]
    assert f"the spec names backend='{other}'" in str(raised.value)


def test_create_sandbox_refuses_a_placement_outside_jupyter() -> None:
    with pytest.raises(ConfigError, match="placement only applies to backend='jupyter'"):
        create_sandbox({"backend": "docker", "placement": "bubblewrap"})
    assert create_sandbox({"backend": "jupyter", "placement": "bubblewrap"}).spec.placement == (
        "bubblewrap"
    )


@pytest.mark.parametrize(
    ("fields", "offered", "missing"),
    [
        ({"backend": "docker"}, {"stateful", "tools", "gpu", "binary_stdout"}, {"restart"}),
        ({"backend": "local"}, {"stateful", "tools", "binary_stdout"}, {"gpu", "restart"}),
        ({"backend": "restricted"}, {"stateful"}, {"tools", "gpu", "binary_stdout"}),
        (
            {"backend": "jupyter", "placement": "docker"},
            {"stateful", "tools", "gpu", "restart", "rich_output", "binary_stdout"},
            set(),
        ),
        (
            {"backend": "jupyter", "placement": "bubblewrap"},
            {"stateful", "tools", "restart", "rich_output", "binary_stdout"},
            {"gpu"},
        ),
    ],
)
def test_capabilities_say_what_a_backend_offers(
    fields: dict[str, str], offered: set[str], missing: set[str]
) -> None:
    sandbox = create_sandbox(fields)
    assert offered <= sandbox.capabilities and not missing & sandbox.capabilities
    assert all(isinstance(c, Capability) for c in sandbox.capabilities)
    assert sandbox.control_dir is None  # not started: nothing is mounted


def test_the_bridge_asks_capabilities_not_names() -> None:
    registry = ToolRegistry()
    registry.tool(lambda: 1, name="one")
    bridge = ToolBridge(create_sandbox({"backend": "restricted"}), registry, allow=["one"])
    with pytest.raises(ConfigError, match="RestrictedSandbox cannot host tools"):
        anyio.run(bridge.__aenter__)


def test_a_pooled_handle_answers_the_contract_before_it_holds_a_sandbox() -> None:
    handle = PooledSandbox(PoolSet(), SandboxSpec())
    assert (handle.control_dir, handle.control_owner) == (None, None)
    assert not hasattr(handle, "socket_dir")  # backend details are not forwarded
