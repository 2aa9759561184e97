"""TLS and authentication helpers shared by pychat and pychat.aio."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Tuple, Union

if TYPE_CHECKING:  # the native module imports this one while it initializes
    from ._pychat import Call

# A certificate or key: PEM text (str or bytes), or the path of a PEM file.
Pem = Union[str, bytes, "os.PathLike[str]"]

# authenticate(call, token) -> principal (str) to admit, None to refuse.
Authenticator = Callable[["Call", Optional[str]], Optional[str]]

_CLIENT_CERT = {"none": 0, "request": 1, "require": 2}


class PeerIdentity(NamedTuple):
    """Who a TLS client proved to be with its certificate (mTLS)."""
    subject: str              # "CN=alice,O=Example"
    sans: Tuple[str, ...]     # subject alternative names: DNS, IP, email, URI


def _pem(value: Optional[Pem], what: str) -> Optional[str]:
    """The library's form: PEM text (it contains "-----BEGIN"), else a path."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if b"-----BEGIN" not in value:
            raise ValueError(f"{what} bytes hold no PEM block (give a path as str or a Path)")
        return value.decode("ascii")
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise TypeError(f"{what} must be PEM text (str or bytes) or a path, "
                    f"not {type(value).__name__}")


def server_security(tls_cert: Optional[Pem], tls_key: Optional[Pem], tls_ca: Optional[Pem],
                    client_cert: Optional[str],
                    authenticate: Optional[Authenticator]) -> Dict[str, Any]:
    if client_cert is None:
        client_cert = "require" if tls_ca is not None else "none"
    if client_cert not in _CLIENT_CERT:
        raise ValueError(f"client_cert must be 'none', 'request' or 'require', not {client_cert!r}")
    if authenticate is not None and not callable(authenticate):
        raise TypeError("authenticate must be callable")
    return {"tls_cert": _pem(tls_cert, "tls_cert"), "tls_key": _pem(tls_key, "tls_key"),
            "tls_ca": _pem(tls_ca, "tls_ca"), "client_cert": _CLIENT_CERT[client_cert],
            "authenticate": authenticate}


def client_security(tls: bool, tls_ca: Optional[Pem], tls_cert: Optional[Pem],
                    tls_key: Optional[Pem], tls_server_name: Optional[str],
                    token: Optional[str], allow_insecure_token: bool) -> Dict[str, Any]:
    return {"tls": bool(tls), "tls_ca": _pem(tls_ca, "tls_ca"),
            "tls_cert": _pem(tls_cert, "tls_cert"), "tls_key": _pem(tls_key, "tls_key"),
            "tls_server_name": tls_server_name, "token": token,
            "allow_insecure_token": bool(allow_insecure_token)}
