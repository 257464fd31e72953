"""Executors that plug execloop's sandboxes into other agent frameworks, one module per
framework, each behind an optional extra (``pip install 'execloop[smolagents]'``)."""

__all__: list[str] = []
