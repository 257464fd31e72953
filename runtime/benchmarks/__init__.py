"""Measuring code shared by ``execloop bench`` and the scripts under ``bench/``: timing and
percentiles, the physical floor of a stateful exec, a raw Jupyter kernel, and the side-by-side
comparison of sandboxes (``execloop bench sandboxes``)."""

__all__: list[str] = []
