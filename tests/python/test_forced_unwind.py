"""A process that exits while a libchat server is busy under a foreign runtime.

CPython (3.11) ends a non-Python thread that wants the GIL during
finalization with pthread_exit, a forced unwind. Here that thread is a
libchat dispatcher running a ctypes callback: the unwind must go through
libchat to the end of the thread, never be swallowed (which aborts).
No pychat: plain ctypes against libchat.so (CHAT_LIB).

What libchat cannot help: a ctypes callback *entered* after Py_FinalizeEx has
finished crashes inside CPython (PyThreadState_New on a freed interpreter).
That happens when the dispatcher was idle all through finalization and a
message arrives after it (a ctypes host should stop its servers before
exit, as pychat's atexit hook does). So the callback here keeps the
dispatcher busy: it is always inside Python or about to enter it, and the
thread is ended (by the forced unwind) during finalization.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

LIB = os.environ.get("CHAT_LIB")

SCRIPT = textwrap.dedent(r"""
    import ctypes, os, sys, threading, time
    from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int32, c_int64,
                        c_size_t, c_uint32, c_void_p)

    lib = ctypes.CDLL(os.environ["CHAT_LIB"])
    ON_MESSAGE = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p)

    class ServerOptions(Structure):
        _fields_ = [("version", c_uint32), ("mode", c_int32), ("max_message_bytes", c_int32),
                    ("send_queue_limit", c_int32), ("recv_window", c_int32),
                    ("dispatcher_threads", c_int32), ("keepalive_ms", c_int32),
                    ("on_open", c_void_p), ("on_message", ON_MESSAGE), ("on_complete", c_void_p),
                    ("on_close", c_void_p), ("user_data", c_void_p)]

    class Text(Structure):
        _fields_ = [("data", c_void_p), ("len", c_size_t)]

    lib.chat_server_options_init.argtypes = [POINTER(ServerOptions), c_uint32]
    lib.chat_server_start.argtypes = [c_char_p, POINTER(ServerOptions), POINTER(c_void_p)]
    lib.chat_server_port.argtypes = [c_void_p]
    lib.chat_call_send.argtypes = [c_void_p, c_void_p, c_size_t, c_int64]
    lib.chat_client_create.argtypes = [c_char_p, c_void_p, POINTER(c_void_p)]
    lib.chat_client_open.argtypes = [c_void_p, c_void_p, POINTER(c_void_p)]
    lib.chat_stream_send.argtypes = [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_int64]
    lib.chat_stream_recv_batch.argtypes = [c_void_p, c_int64, POINTER(Text), c_size_t,
                                           POINTER(c_size_t)]

    @ON_MESSAGE
    def on_message(call, name, name_len, message, message_len, user_data):
        time.sleep(0.0005)  # gives the GIL up: the dispatcher is always in or
        # about to enter Python, never idle, while messages keep coming
        lib.chat_call_send(call, message, message_len, -1)  # echo, in Python

    opts = ServerOptions()
    assert lib.chat_server_options_init(byref(opts), 1) == 0
    opts.mode = 2  # CHAT_MODE_CUSTOM
    opts.on_message = on_message
    server = c_void_p()
    assert lib.chat_server_start(b"127.0.0.1:0", byref(opts), byref(server)) == 0
    target = f"127.0.0.1:{lib.chat_server_port(server)}".encode()

    flowing = threading.Event()

    client, stream = c_void_p(), c_void_p()
    assert lib.chat_client_create(target, None, byref(client)) == 0
    assert lib.chat_client_open(client, None, byref(stream)) == 0

    def send_forever():  # blocks while the queues are full: a steady backlog
        while lib.chat_stream_send(stream, b"n", 1, b"busy", 4, -1) == 0:
            pass

    def receive_forever():
        texts = (Text * 64)()
        count = c_size_t()
        got = 0
        while lib.chat_stream_recv_batch(stream, -1, texts, 64, byref(count)) == 0:
            got += count.value
            if got >= 200:
                flowing.set()

    threading.Thread(target=send_forever, daemon=True).start()
    threading.Thread(target=receive_forever, daemon=True).start()
    assert flowing.wait(20), "messages never flowed"
    print("exiting", flush=True)
    # Exit with the server busy: nothing is stopped or destroyed.
""")


@pytest.mark.skipif(not LIB, reason="CHAT_LIB is not set")
def test_exit_with_a_busy_ctypes_server_never_dies_by_a_signal() -> None:
    env = dict(os.environ)
    outcomes = []
    for _ in range(12):
        try:
            p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                               timeout=60, env=env)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"hung: stdout={e.stdout!r} stderr={e.stderr!r}")
        assert p.stdout == "exiting\n", p.stderr
        outcomes.append((p.returncode, p.stderr[-500:]))
    killed = [(signal.Signals(-rc).name, err) for rc, err in outcomes if rc < 0]
    assert not killed, killed
    assert all(rc == 0 for rc, _ in outcomes), outcomes
