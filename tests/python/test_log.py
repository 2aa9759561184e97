"""libchat's log lines (gRPC's own) go to Python's logging, "pychat" logger."""
from __future__ import annotations

import logging
import textwrap
from typing import Iterator, List

import pytest

import pychat
from conftest import run_python, wait_until

BIND_TWICE = """
    import pychat
    first = pychat.Server("127.0.0.1:0")
    try:
        pychat.Server(f"127.0.0.1:{first.port}")
    except pychat.Unavailable:
        pass
    first.close()
"""


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def bind_errors(self) -> int:
        return sum(r.levelno == logging.ERROR and "No address added" in r.getMessage()
                   for r in list(self.records))


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("pychat")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    pychat.set_log_destination("logging")


def bind_twice() -> None:
    with pychat.Server("127.0.0.1:0") as first:
        with pytest.raises(pychat.Unavailable):
            pychat.Server(f"127.0.0.1:{first.port}")


def test_grpc_log_lines_reach_the_pychat_logger(collect: Collect) -> None:
    bind_twice()
    wait_until(lambda: collect.bind_errors() == 1, what="gRPC's bind error in logging")
    record = next(r for r in collect.records if "No address added" in r.getMessage())
    assert record.name == "pychat" and record.levelname == "ERROR"


def test_none_drops_and_logging_comes_back(collect: Collect) -> None:
    pychat.set_log_destination("none")
    bind_twice()
    pychat.set_log_destination("logging")
    bind_twice()  # lines are delivered in order: once this one is in, so would the first be
    wait_until(lambda: collect.bind_errors() == 1, what="the second bind error")
    with pytest.raises(ValueError):
        pychat.set_log_destination("syslog")


def test_default_goes_to_logging_not_raw_stderr() -> None:
    """A fresh process: nothing configured but a logging handler."""
    result = run_python(textwrap.dedent("""
        import logging, threading
        seen = threading.Event()
        class Seen(logging.Handler):
            def emit(self, record):
                if "No address added" in record.getMessage():
                    seen.set()
        logging.getLogger("pychat").addHandler(Seen())
        logging.getLogger("pychat").propagate = False
    """) + textwrap.dedent(BIND_TWICE) + 'print("seen" if seen.wait(10) else "not seen")\n')
    assert (result.returncode, result.stdout) == (0, "seen\n"), result.stderr
    assert "No address added" not in result.stderr


def test_stderr_restores_grpcs_writer() -> None:
    result = run_python('import pychat\npychat.set_log_destination("stderr")\n'
                        + textwrap.dedent(BIND_TWICE))
    assert result.returncode == 0, result.stderr
    assert "No address added" in result.stderr
