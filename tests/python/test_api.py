"""pychat's 1.0 surface: StatusCode printing, CallMetadata as a Mapping, the
Handler base classes, OSError for a server that cannot bind, and no receive
buffer for a stream that never receives. Real servers on 127.0.0.1 port 0,
real clients; waits have deadlines."""
from __future__ import annotations

import asyncio
import collections.abc
import ctypes
import gc
import inspect
import queue
import threading
from typing import Any, Awaitable, List, Tuple, TypeVar

import grpc
import pytest

import pychat
import pychat.aio as aio
from conftest import WAIT, target

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


# ----------------------------------------------------------------------------
# StatusCode


def test_status_code_prints_like_grpc() -> None:
    assert len(pychat.StatusCode) == len(grpc.StatusCode) == 17
    for code in pychat.StatusCode:
        theirs = grpc.StatusCode[code.name]
        assert theirs.value[0] == code.value  # same wire number
        assert str(code) == str(theirs) == f"StatusCode.{code.name}"
        assert format(code) == f"{code}" == "%s" % code == str(theirs)
        assert f"{code:>40}" == f"{str(theirs):>40}"
        assert repr(code) == f"<StatusCode.{code.name}: {code.value}>"
    # Still an IntEnum: equal to its wire number, int() is that number.
    assert pychat.StatusCode.PERMISSION_DENIED == 7 and int(pychat.StatusCode.NOT_FOUND) == 5
    assert pychat.StatusCode(14) is pychat.StatusCode.UNAVAILABLE
    assert str(pychat.NotFound("x")) == "NOT_FOUND: x"


def test_status_code_names_are_the_librarys() -> None:
    # One table: the library's chat_code_name() names each gRPC code.
    for number in range(0, 17):
        assert pychat.StatusCode(number).name == pychat._pychat._code_name(number)
    # Library codes (17..29) are local outcomes, never a StatusCode.
    for number in range(17, 30):
        assert pychat._pychat._code_name(number) != "UNRECOGNIZED"
        with pytest.raises(ValueError):
            pychat.StatusCode(number)
    assert pychat._pychat._code_name(27) == "CANNOT_LISTEN"
    assert pychat._pychat._code_name(30) == "UNRECOGNIZED"
