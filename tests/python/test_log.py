"""libchat's log lines (gRPC's own) go to Python's logging, "pychat" logger."""
from __future__ import annotations

import inspect
import logging
import textwrap
from typing import Iterator, List

import pytest

import pychat
from conftest import run_python, wait_until

LOG_LINE = "Error parsing metadata: error=invalid value key=content-type value=text/plain"


def bad_request() -> None:
    """Sends a request with content-type text/plain to a fresh server.

    gRPC 1.51 logs LOG_LINE (ERROR) while it parses the request's headers, on
    one of its threads; the server answers the request only after that, so
    when this returns the line was logged (or dropped). Self-contained: the
    subprocess tests run its source."""
    import socket
    import time

    import h2.config
    import h2.connection
    import h2.events

    import pychat

    with pychat.Server("127.0.0.1:0") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                                  (":path", "/Chat/chat"), (":authority", "x"),
                                  ("content-type", "text/plain"), ("te", "trailers")],
                              end_stream=True)
            sock.sendall(conn.data_to_send())
            deadline = time.monotonic() + 10
            while True:  # until the server answers stream 1, or goes away
                assert time.monotonic() < deadline, "no answer to the request"
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.StreamReset,
                                          h2.events.ConnectionTerminated)):
                        return


BAD_REQUEST = textwrap.dedent(inspect.getsource(bad_request)) + "bad_request()\n"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def bad_request_errors(self) -> int:
        return sum(r.levelno == logging.ERROR and LOG_LINE in r.getMessage()
                   for r in list(self.records))


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("pychat")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    pychat.set_log_destination("logging")


def test_grpc_log_lines_reach_the_pychat_logger(collect: Collect) -> None:
    bad_request()
    wait_until(lambda: collect.bad_request_errors() == 1, what="gRPC's parse error in logging")
    record = next(r for r in collect.records if LOG_LINE in r.getMessage())
    assert record.name == "pychat" and record.levelname == "ERROR"


def test_none_drops_and_logging_comes_back(collect: Collect) -> None:
    pychat.set_log_destination("none")
    bad_request()  # returns once the line was dropped
    pychat.set_log_destination("logging")
    bad_request()  # lines are delivered in order: once this one is in, so would the first be
    wait_until(lambda: collect.bad_request_errors() == 1, what="the second parse error")
    with pytest.raises(ValueError):
        pychat.set_log_destination("syslog")


def test_default_goes_to_logging_not_raw_stderr() -> None:
    """A fresh process: nothing configured but a logging handler."""
    result = run_python(textwrap.dedent("""
        import logging, threading
        seen = threading.Event()
        class Seen(logging.Handler):
            def emit(self, record):
                if %r in record.getMessage():
                    seen.set()
        logging.getLogger("pychat").addHandler(Seen())
        logging.getLogger("pychat").propagate = False
    """ % LOG_LINE) + BAD_REQUEST + 'print("seen" if seen.wait(10) else "not seen")\n')
    assert (result.returncode, result.stdout) == (0, "seen\n"), result.stderr
    assert LOG_LINE not in result.stderr


def test_stderr_restores_grpcs_writer() -> None:
    result = run_python('import pychat\npychat.set_log_destination("stderr")\n' + BAD_REQUEST)
    assert result.returncode == 0, result.stderr
    assert LOG_LINE in result.stderr
