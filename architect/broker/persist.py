"""Persistence as a unit of work: every book of in-memory changes has the same pair.

    taken = book.take_dirty()    # the pending changes, handed over (the book forgets them)
    book.put_back(taken)         # the write failed: pending again, ahead of newer changes

`book.dirty` is truthy while it holds changes. Broker.persist() takes from every Stream,
writes them all in one store transaction (group commit) and, if that fails, puts every one
back. Adding a table is one Stream line in Broker.__init__.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def _never(_taken) -> bool:
    return False


@dataclass(frozen=True)
class Stream:
    """One kind of pending change and how it is written.

    book: has take_dirty() / put_back(taken) / dirty.
    write(store, taken): the store call(s), inside persist()'s transaction.
    encode(taken): what write() gets, computed before the transaction (default: taken).
    urgent: changes are written at the next iteration, not at the next flush interval.
    durable(taken): it holds something we acknowledge: the commit fsyncs.
    committed(taken): after the commit (also when nothing needed writing)."""
    name: str
    book: Any
    write: Callable[[Any, Any], None]
    encode: Callable[[Any], Any] | None = None
    urgent: bool = False
    durable: Callable[[Any], bool] = _never
    committed: Callable[[Any], None] | None = None


class RowBuffer(list):
    """Rows to insert (metrics samples, task output): a list with the unit-of-work pair.
    Append to it; never rebind the attribute holding it (its Stream keeps this object)."""

    @property
    def dirty(self) -> "RowBuffer":
        return self

    def take_dirty(self) -> list:
        rows = list(self)
        self.clear()
        return rows

    def put_back(self, rows: list) -> None:
        self[:0] = rows
