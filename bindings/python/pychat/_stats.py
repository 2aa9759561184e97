"""pychat.Stats: a server's or a client's counters (chat_stats in chat.h)."""
from __future__ import annotations

from typing import NamedTuple


class Stats(NamedTuple):
    """A snapshot of the counters since the server started or the client was
    created. Message bytes are the encoded protobuf messages', before any
    compression. Server: streams_refused counts new calls refused
    (RESOURCE_EXHAUSTED, or UNAVAILABLE while stopping), streams_cut the calls
    it cut (a stop's deadline, the memory bound, a room's slow reader).
    Client: streams_refused counts streams that ended RESOURCE_EXHAUSTED or
    UNAVAILABLE before any reply, streams_cut the other streams that ended
    with an error it did not cause by cancelling."""
    streams_open: int
    streams_total: int
    streams_refused: int
    streams_cut: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
