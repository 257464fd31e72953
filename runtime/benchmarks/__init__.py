"""Every benchmark ``execloop bench`` runs, and the measuring code the scripts under ``bench/``
share: ``tokens`` (code mode beside a classic agent on ``suite``'s shop tasks and ``bfcl``'s,
replayed by ``replay``'s loopback model or measured live; ``figures``, ``tokens_report``) and
``sandboxes`` (every backend beside its peers: ``contenders``, ``peers``, ``raw_kernel``,
``floor``, ``measure``). Each command's CLI sits beside its benchmark (``*_cli``)."""

__all__: list[str] = []
