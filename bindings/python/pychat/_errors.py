"""Status codes and exceptions. Imported by the native module: no import of it here."""
from __future__ import annotations

import enum
from typing import Callable, ClassVar, Dict, Tuple, Type


class StatusCode(enum.IntEnum):
    """gRPC status codes, named as in grpc.StatusCode, numbered as on the wire.

    Prints like grpc.StatusCode: str() and format() give "StatusCode.NOT_FOUND"
    (Python 3.11 made IntEnum's str() the bare number), repr() gives
    "<StatusCode.NOT_FOUND: 5>". It stays an IntEnum, so a code compares
    equal to its wire number (StatusCode.NOT_FOUND == 5) and int(code) is
    that number; grpc.StatusCode's value is a tuple instead. The names are
    libchat's (chat_code_name): a test checks each one against the library.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    def __str__(self) -> str:
        return f"StatusCode.{self.name}"

    def __repr__(self) -> str:
        return f"<StatusCode.{self.name}: {self.value}>"

    def __format__(self, format_spec: str) -> str:
        # As str(), like grpc.StatusCode; int(code) for the number.
        return format(str(self), format_spec)


class ChatError(Exception):
    """A call ended with a gRPC error status (from the peer or the transport).

    Raised in a handler method, it fails that call with `code` and `details`.
    """

    code: StatusCode
    details: str

    def __init__(self, code: StatusCode | int, details: str = "") -> None:
        self.code = StatusCode(code)
        self.details = details
        super().__init__(self.code, details)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}" if self.details else self.code.name

    def __reduce__(self) -> Tuple[Callable[[int, str], ChatError], Tuple[int, str]]:
        return _from_status, (int(self.code), self.details)


class ClosedError(ValueError):
    """The stream, call or client was closed or has ended: it takes no more of this."""


class _CodedError(ChatError):
    _code: ClassVar[StatusCode]

    def __init__(self, details: str = "") -> None:
        super().__init__(self._code, details)


class Cancelled(_CodedError):
    _code = StatusCode.CANCELLED


class Unknown(_CodedError):
    _code = StatusCode.UNKNOWN


class InvalidArgument(_CodedError):
    _code = StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(_CodedError):
    _code = StatusCode.DEADLINE_EXCEEDED


class NotFound(_CodedError):
    _code = StatusCode.NOT_FOUND


class AlreadyExists(_CodedError):
    _code = StatusCode.ALREADY_EXISTS


class PermissionDenied(_CodedError):
    _code = StatusCode.PERMISSION_DENIED


class ResourceExhausted(_CodedError):
    _code = StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(_CodedError):
    _code = StatusCode.FAILED_PRECONDITION


class Aborted(_CodedError):
    _code = StatusCode.ABORTED


class OutOfRange(_CodedError):
    _code = StatusCode.OUT_OF_RANGE


class Unimplemented(_CodedError):
    _code = StatusCode.UNIMPLEMENTED


class Internal(_CodedError):
    _code = StatusCode.INTERNAL


class Unavailable(_CodedError):
    _code = StatusCode.UNAVAILABLE


class DataLoss(_CodedError):
    _code = StatusCode.DATA_LOSS


class Unauthenticated(_CodedError):
    _code = StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[int, Type[_CodedError]] = {
    cls._code: cls
    for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}


def _from_status(code: int, details: str) -> ChatError:
    """The exception for a status: the subclass for its code, else ChatError itself."""
    cls = _BY_CODE.get(code)
    return cls(details) if cls is not None else ChatError(code, details)
