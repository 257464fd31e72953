"""The helper's modules, one job each; ``helper.py`` (beside this folder in a sandbox) runs them.

``framing`` (frames, the compact exec), ``capture`` (fds 1 and 2), ``probes`` (cgroup counters,
stray processes, tracing), ``manifests`` (tar checks, listings), ``transfers`` (the put, get
and manifest requests), ``session`` (the request loop and an exec), ``startup`` (the command
line). Standard library only: this is the only execloop code that runs inside a sandbox.
"""

__all__: list[str] = []  # nothing is imported here: the guest imports only what it runs
