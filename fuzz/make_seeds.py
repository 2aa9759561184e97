#!/usr/bin/python3
"""Writes the hand-made seed corpus into fuzz/corpus/<target>/.

The seeds are small and readable on purpose: libFuzzer grows the corpus from
them (scripts/fuzz.sh fuzzes a copy and keeps the committed seeds as they
are). Run again after changing the input format of a target.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target: str, seeds: "list[bytes]") -> None:
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.startswith("seed-"):
            os.remove(os.path.join(d, name))
    for i, s in enumerate(seeds):
        with open(os.path.join(d, f"seed-{i:02d}"), "wb") as f:
            f.write(s)


def field(num: int, data: bytes) -> bytes:
    return bytes([num << 3 | 2, len(data)]) + data


wire = [
    b"",
    field(1, b"Sam") + field(2, b"Hi"),
    field(1, b"Ann") + field(2, b"Hey"),
    field(1, "Jöhn €".encode()) + field(2, "😀".encode()),
    field(2, b"only message"),
    field(1, b"first") + field(1, b"last wins"),
    field(1, b"a") + bytes([3 << 3 | 0, 0x96, 0x01]) + field(2, b"b"),  # unknown varint
    field(1, b"x") + bytes([5 << 3 | 5, 1, 2, 3, 4]) + bytes([6 << 3 | 1]) + b"\0" * 8,
    field(1, b"\xc3\x28"),                       # invalid UTF-8
    field(1, b"\xed\xa0\x80"),                   # surrogate
    field(1, b"\xf4\x90\x80\x80"),               # above U+10FFFF
    bytes([0x0a, 0x05]) + b"abc",                # truncated
    bytes([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),  # huge length
    bytes([1 << 3 | 3, 2 << 3 | 2, 1, 0x61, 1 << 3 | 4]),  # group
    bytes([0x00]),                               # tag 0
]

address = [s.encode() for s in [
    "127.0.0.1:0", "0.0.0.0:9090", "[::1]:0", "[::]:65535", "localhost:8080",
    "[fe80::1%eth0]:1", "127.0.0.1:70000", "127.0.0.1:65536", "127.0.0.1:99999999999",
    "127.0.0.1", "127.0.0.1:-1", "127.0.0.1:80x", ":9090", "::1:9090", "[::1]",
    "http://127.0.0.1:9090/", "https://h:1", "http://ipv4:1", "dns:///localhost:9090",
    "dns://8.8.8.8:53/example.com:443", "ipv4:127.0.0.1:1,10.0.0.1:2", "ipv6:[::1]:1",
    "unix:/tmp/chat.sock", "unix-abstract:chat", "xds:///svc", "1.2.3:4", "a_b-c.d:00080",
]]


def text(b: bytes) -> bytes:  # a raw text argument (kind 4)
    return bytes([4, len(b)]) + b


def send(slot: int, name: bytes, msg: bytes, wait: int = 3) -> bytes:
    return bytes([slot << 4 | 1]) + text(name) + text(msg) + bytes([wait])


def op(slot: int, code: int, *args: int) -> bytes:
    return bytes([slot << 4 | code, *args])


def recv(slot: int, n: int = 4, wait: int = 0xFF) -> bytes:  # 0xFF: a 5 ms wait
    return b"".join(op(slot, 4, wait) for _ in range(n))


ECHO, CUSTOM = 0, 1
capi = [
    op(0, 0, ECHO) + send(0, b"Sam", b"Hi") + send(0, b"Ann", b"Hey") + op(0, 2) + recv(0, 4),
    op(0, 0, CUSTOM) + send(0, b"Sam", b"echo") + op(0, 2) + recv(0, 3),
    op(0, 0, CUSTOM) + send(0, b"a", b"f\x05") + recv(0, 3),
    op(0, 0, CUSTOM) + send(0, b"a", b"c") + recv(0, 2) + op(0, 7),
    op(0, 0, CUSTOM) + send(0, b"a", b"m\x05") + op(0, 5, 0xFF, 4) + op(0, 5, 0xFF, 4),
    op(0, 0, CUSTOM) + send(0, b"a", b"z\x02") + send(0, b"a", b"u") + send(0, b"a", b"r")
    + send(0, b"a", b"n\x02") + op(0, 2) + recv(0, 4),
    op(0, 0, CUSTOM | 4, 0) + recv(0, 2),                 # x-open: fail
    op(0, 0, CUSTOM | 4 | 8 | 16, 1) + send(0, b"k", b"v") + recv(0, 2),
    op(0, 0, ECHO | 4 | 8, 1),                             # a bad metadata key
    op(0, 0, ECHO | 2, 0xF5) + op(0, 6, 0xFF) + recv(0, 1),  # a 5 ms deadline
    op(0, 0, ECHO | 64, 4) + op(0, 0, ECHO | 64, 1) + op(0, 7),  # version 4 is unknown
    op(0, 0, ECHO) + op(0, 3) + recv(0, 1) + op(0, 7) + send(0, b"a", b"b"),
    op(0, 0, ECHO) + bytes([0x01, 2, 1, 0]),              # NULL name with a length
    op(0, 0, CUSTOM) + bytes([0x01, 3, 0, 0]),            # oversized name
    op(0, 0, ECHO) + bytes([0x01, 4, 2, 0xff, 0xfe, 0, 0]),  # invalid UTF-8
    op(0, 0, ECHO) + op(1, 0, CUSTOM) + send(0, b"a", b"1") + send(1, b"b", b"2")
    + op(0, 8) + recv(1, 2) + op(1, 3),
    b"".join(op(0, 9, i) for i in range(12)),
    op(0, 10, 0) + op(0, 10, 1) + op(0, 10, 2) + op(0, 10, 0xFF),
    op(0, 11) + struct.pack("<i", 25) + op(0, 11) + struct.pack("<i", -1)
    + op(0, 11) + struct.pack("<i", 26),
    op(0, 12, 15) + b"127.0.0.1:70000" + op(0, 12, 9) + b"127.0.0.1" + op(0, 12, 6) + b"https:",
    op(0, 12, 16) + b"http://[::1]:1//" + op(0, 12, 12) + b"unix:/x.sock",
]

write("fuzz_wire", wire)
write("fuzz_address", address)
write("fuzz_capi", capi)
