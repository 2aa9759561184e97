"""pytest fixtures for suites that talk to libchat through grpcio, the
independent implementation. A conftest imports the fixtures it uses:

    from grpc_testing import grpc_channel  # noqa: F401  (a fixture)
"""
from __future__ import annotations

from typing import Callable, Iterator, List

import grpc
import pytest

from chat_testing import WAIT


@pytest.fixture
def grpc_channel() -> Iterator[Callable[[str], grpc.Channel]]:
    """Factory: grpc_channel(target) gives a connected grpcio channel,
    closed after the test."""
    channels: List[grpc.Channel] = []

    def connect(target: str) -> grpc.Channel:
        channel = grpc.insecure_channel(target)
        channels.append(channel)
        grpc.channel_ready_future(channel).result(timeout=WAIT)
        return channel

    yield connect
    for channel in channels:
        channel.close()
