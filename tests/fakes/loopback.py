"""The loopback server now ships in ``execloop.testing`` (the replay model of ``execloop bench
tokens`` is built on it); re-exported here for the provider fakes."""

from execloop.testing.loopback import EventStream, LoopbackServer, PlannedResponse, RecordedRequest

__all__ = ["EventStream", "LoopbackServer", "PlannedResponse", "RecordedRequest"]
