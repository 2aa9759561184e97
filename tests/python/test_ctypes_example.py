"""examples/python/ctypes_chat.py: libchat through ctypes alone, on the event
queue, alone and against the C examples. It must not need pychat: each run
gets an environment without the build tree's python directory."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from chat_testing import WAIT, Process, ServerProcess, run as run_command
from test_examples import C_CLIENT, C_SERVER, EXAMPLES, SEED_OUTPUT

CTYPES_CHAT = [sys.executable, os.path.join(EXAMPLES, "ctypes_chat.py")]
LIB = os.environ.get("CHAT_LIB", "libchat.so.1")


def env_without_pychat() -> Dict[str, str]:
    env = os.environ.copy()
    env.pop("PYTHONPATH", None)  # the build tree's pychat and grpcio stubs
    return env


def ctypes_chat(*args: str) -> List[str]:
    return [*CTYPES_CHAT, "--lib", LIB, *args]


def run(command: List[str], stdin: str = "") -> "subprocess.CompletedProcess[str]":
    return run_command(command, input=stdin, env=env_without_pychat())


def CtypesServer(*args: str) -> ServerProcess:
    return ServerProcess(ctypes_chat("--serve", "127.0.0.1:0", *args), env=env_without_pychat())


def test_serves_and_runs_the_seed_in_one_process() -> None:
    result = run(ctypes_chat())
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")


def test_library_from_the_environment() -> None:
    env = env_without_pychat()
    env["CHAT_LIB"] = LIB
    result = run_command(CTYPES_CHAT, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")


def test_its_server_under_the_c_seed_client() -> None:
    with CtypesServer() as server:
        target = server.target
        for _ in range(2):  # the first call's state is gone, the server goes on
            result = run([*C_CLIENT, "--target", target])
            assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
        result = run([*C_CLIENT, "--target", target, "--name", "Zed"],
                     stdin="hello\n\nünïcode ✓\nlast")
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == "Zed: hello\nZed: \nZed: ünïcode ✓\nZed: last\n"
        assert server.stop() == "ctypes_chat: stopped on SIGINT (0 streams cut)\n"


def test_its_client_against_the_c_echo_server() -> None:
    with ServerProcess([*C_SERVER, "--address", "127.0.0.1:0"]) as server:
        result = run(ctypes_chat("--target", server.target))
        assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")


def test_its_stop_serves_the_grace_period_then_cuts() -> None:
    """chat_server_stop runs on a thread while the loop goes on answering:
    an open stream is still served, then cut at the end of the grace."""
    with CtypesServer("--grace-ms", "300") as server, \
            Process([*C_CLIENT, "--target", server.target, "--name", "Zed"],
                    stdin=subprocess.PIPE) as client:
        client.say("before")
        assert client.out.next() == "Zed: before\n"
        assert server.stop(signal.SIGTERM) == "ctypes_chat: stopped on SIGTERM (1 stream cut)\n"
        assert client.wait() == 1
        assert client.err.rest().startswith("chat_client: UNAVAILABLE: ")


def test_failures_exit_non_zero() -> None:
    result = run([*CTYPES_CHAT, "--lib", "/nonexistent/libchat.so.1"])
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ctypes_chat: cannot load /nonexistent/libchat.so.1")
    server = ServerProcess([*C_SERVER, "--address", "127.0.0.1:0"])
    server.stop()  # its port is free now: nothing listens there
    result = run(ctypes_chat("--target", server.target))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ctypes_chat: UNAVAILABLE: "), result.stderr


def test_its_structs_are_the_headers_to_the_byte(tmp_path: Path) -> None:
    """The ctypes mirrors of chat_server_options, chat_stream_options and
    chat_event must have the C compiler's size and offsets: the *_init
    functions write the whole struct of their version, so a field the
    mirror lacks is a heap overrun (a field added to stream options v3
    without one did exactly that: Python's debug allocator caught the 8
    bytes written past the end, and the release build crashed in the
    garbage collector at exit, one run in three)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    spec = importlib.util.spec_from_file_location("ctypes_chat", os.path.join(EXAMPLES,
                                                                              "ctypes_chat.py"))
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    structs = {"chat_server_options": example.ServerOptions,
               "chat_stream_options": example.StreamOptions, "chat_event": example.Event}
    source = ["#include <stddef.h>", "#include <stdio.h>", '#include <libchat/chat.h>', "int main(void) {"]
    expected = []
    for c_name, mirror in structs.items():
        source.append(f'printf("{c_name} sizeof %zu\\n", sizeof({c_name}));')
        expected.append(f"{c_name} sizeof {ctypes.sizeof(mirror)}")
        for field, _ in mirror._fields_:
            source.append(f'printf("{c_name} {field} %zu\\n", offsetof({c_name}, {field}));')
            expected.append(f"{c_name} {field} {getattr(mirror, field).offset}")
    source += ["return 0;", "}"]
    (tmp_path / "layout.c").write_text("\n".join(source) + "\n")
    include = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "capi", "include")
    subprocess.run([compiler, "-std=c99", "-I", include, "-o", str(tmp_path / "layout"),
                    str(tmp_path / "layout.c")], check=True, timeout=WAIT * 6)
    got = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True,
                         timeout=WAIT, check=True).stdout.splitlines()
    assert got == expected
