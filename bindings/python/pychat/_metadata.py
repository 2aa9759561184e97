"""A call's metadata as a read-only mapping. Imported by the native module: no import of it here."""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Mapping, Tuple, Union

MetadataValue = Union[str, bytes]


def _fold(key: str) -> str:
    # Metadata keys are ASCII; str.lower() would also fold non-ASCII letters
    # onto ASCII ones (KELVIN SIGN -> "k") and find keys never asked for.
    return key.lower() if key.isascii() else key


class CallMetadata(Mapping[str, MetadataValue]):
    """The metadata a client sent with a call: a read-only Mapping.

    gRPC metadata may repeat a key. The mapping holds one entry per key, its
    first value (md["x-user"], md.get(key), key in md, len(), iteration in
    key order); get_all(key) gives every value of a key and all_items() every
    (key, value) pair, as grpcio's invocation_metadata() does. Keys are
    lower-case and looked up case-insensitively; values are str, bytes for
    keys ending in "-bin". A snapshot: a call's metadata never changes.
    """

    __slots__ = ("_items", "_first")

    def __init__(self, items: Iterable[Tuple[str, MetadataValue]] = ()) -> None:
        self._items: Tuple[Tuple[str, MetadataValue], ...] = tuple(
            (_fold(key), value) for key, value in items)
        first: Dict[str, MetadataValue] = {}
        for key, value in self._items:
            first.setdefault(key, value)
        self._first = first

    def __getitem__(self, key: str) -> MetadataValue:
        if not isinstance(key, str):
            raise KeyError(key)
        return self._first[_fold(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, key: str) -> List[MetadataValue]:
        """Every value sent for `key`, in order; [] if none."""
        folded = _fold(key)
        return [value for k, value in self._items if k == folded]

    def all_items(self) -> List[Tuple[str, MetadataValue]]:
        """Every (key, value) pair, repeated keys included, in key order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"CallMetadata({list(self._items)!r})"
