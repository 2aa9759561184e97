"""Checks and converts 1.1's control options (compression, limits) for the
native Server and Client, which take them by name."""
from __future__ import annotations

from typing import Any, Dict, Optional

# chat.h's CHAT_COMPRESSION_* values.
_COMPRESSION = {"none": 0, "deflate": 1, "gzip": 2}


def compression(value: Optional[str]) -> Optional[int]:
    """None stays None (the default); "none", "deflate" or "gzip"."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in _COMPRESSION:
        raise ValueError(f"compression must be 'none', 'deflate' or 'gzip', not {value!r}")
    return _COMPRESSION[value]


def options(**given: Any) -> Dict[str, Any]:
    """The options given (not None), converted for the native layer."""
    out: Dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        out[name] = compression(value) if name == "compression" else value
    return out
