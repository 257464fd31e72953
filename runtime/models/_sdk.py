"""What the two SDK adapters share: how the SDKs' retry policy reads in error messages."""

from __future__ import annotations

__all__ = ["attempts", "sdk_retries"]


def sdk_retries(status: int) -> bool:
    """Whether the SDKs retry this status (``_should_retry`` in their ``_base_client.py``:
    408, 409, 429 and 5xx, unless the server sends ``x-should-retry``)."""
    return status in (408, 409, 429) or status >= 500


def attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"
