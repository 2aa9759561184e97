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


# Options given in seconds, passed on in milliseconds.
_SECONDS = ("max_connection_age", "max_connection_age_grace", "max_connection_idle")


def options(**given: Any) -> Dict[str, Any]:
    """The options given (not None), converted for the native layer."""
    out: Dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name == "compression":
            out[name] = compression(value)
        elif name in _SECONDS:
            if not isinstance(value, (int, float)) or not 0 <= value <= 2_000_000:
                raise ValueError(f"{name} must be 0 to 2000000 seconds, not {value!r}")
            out[name + "_ms"] = round(value * 1000)
        else:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
            out[name] = value
    return out
