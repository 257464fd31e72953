"""The restricted runner's guards, in this process (the session itself needs a socket)."""

from __future__ import annotations

import pytest
from RestrictedPython import compile_restricted_exec

from execloop.sandboxes import restricted_runner as runner


def test_imports_are_limited_to_the_allowlist_and_its_submodules() -> None:
    assert runner._guarded_import("json").__name__ == "json"
    assert runner._guarded_import("collections.abc").__name__ == "collections"
    for name in ("os", "sys", "subprocess", "importlib", "jsonx"):
        with pytest.raises(ImportError, match=f"import of '{name}' is not allowed"):
            runner._guarded_import(name)
    with pytest.raises(ImportError, match="import of 'json' is not allowed"):
        runner._guarded_import("json", level=1)  # relative imports never resolve to the stdlib


def test_modules_reached_through_allowed_ones_are_refused() -> None:
    import datetime

    with pytest.raises(ImportError, match="attribute 'sys' is the module 'sys'"):
        runner._guarded_getattr(datetime, "sys")
    with pytest.raises(ImportError, match=r"datetime\.sys"):
        runner._guarded_import("datetime", fromlist=("sys",))
    assert runner._guarded_getattr(datetime, "date") is datetime.date


def test_getattr_refuses_private_names_and_raises_for_missing_ones() -> None:
    with pytest.raises(AttributeError, match="invalid attribute name"):
        runner._guarded_getattr((), "__class__")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        runner._guarded_getattr(1, "nope")
    assert runner._guarded_getattr(1, "nope", "fallback") == "fallback"


def test_inplace_operators() -> None:
    assert runner._inplacevar("+=", 1, 2) == 3
    items = [1]
    assert runner._inplacevar("+=", items, [2]) is items
    assert runner._inplacevar("**=", 2, 10) == 1024


def test_private_names_are_refused_at_compile_time() -> None:
    result = compile_restricted_exec("().__class__.__bases__[0].__subclasses__()", "<t>")
    assert result.code is None
    assert any('"__class__" is an invalid attribute name' in error for error in result.errors)
