"""An in-memory table with the part of the Bigtable `Table` interface that common/store.py uses, so
the web app's queries run in a unit test without the emulator.

It keeps what Bigtable guarantees and the store relies on: rows sorted by key bytes, a range's
start key included and its end key left out, the cells of a row held per family and qualifier with
the newest first, rows with no cell left after the filter not returned, `limit` counting returned
rows, and a write to a family the table lacks refused row by row. It understands exactly the row
filters the store builds; any other filter raises TypeError rather than being ignored.
tests/integration/test_memtable_contract.py runs the same operations here and on the emulator.

    table = MemoryTable()
    store.write_cell_rows(table, [(key, store.transaction_cells(...))])
    create_app(config, table=table)
"""

from __future__ import annotations

import bisect
import itertools
import re
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.cloud.bigtable import row_filters
from google.cloud.bigtable.row_data import Cell
from google.cloud.bigtable.row_set import RowSet
from google.rpc import code_pb2, status_pb2

from common import store

# (family, qualifier, timestamp, value), in the order Bigtable returns a row's cells.
_FlatCell = tuple[str, bytes, int, bytes]


def _to_bytes(value: str | bytes | int) -> bytes:
    """A value as Bigtable stores it: str as UTF-8, int as a 64-bit big-endian signed integer."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return struct.pack(">q", value)
    return value.encode()


def _regex_text(regex: str | bytes) -> str:
    return regex.decode() if isinstance(regex, bytes) else regex


DELETE_ROW = ("", b"", b"")  # the mutation a row's delete() adds


@dataclass
class MemoryRow:
    """A row of cells to write (the `DirectRow` returned by `direct_row`), applied by `mutate_rows`."""

    row_key: bytes
    mutations: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def set_cell(
        self, column_family_id: str, column: str | bytes, value: str | bytes | int, timestamp: Any = None
    ) -> None:
        self.mutations.append((column_family_id, _to_bytes(column), _to_bytes(value)))

    def delete(self) -> None:
        """Delete the whole row (DeleteFromRow), in order with the row's other mutations."""
        self.mutations.append(DELETE_ROW)


@dataclass
class ReadRow:
    """A row as read (the `PartialRowData` Bigtable returns): cells[family][qualifier], newest first."""

    row_key: bytes
    cells: dict[str, dict[bytes, list[Cell]]]


class MemoryTable:
    """Rows in memory; `families` are the column families the table was created with."""

    def __init__(self, families: Iterable[str] = store.FAMILIES) -> None:
        self.families = frozenset(families)
        # row key -> (family, qualifier) -> [(timestamp, value)], newest first
        self._rows: dict[bytes, dict[tuple[str, bytes], list[tuple[int, bytes]]]] = {}
        self._keys: list[bytes] = []  # the keys of _rows, sorted
        self._clock = itertools.count(1)  # a logical clock: a later write is always newer
        self._lock = threading.Lock()  # the web app reads from several threads

    # --- writes ---------------------------------------------------------------------------------

    def direct_row(self, row_key: bytes) -> MemoryRow:
        return MemoryRow(_to_bytes(row_key))

    def mutate_rows(self, rows: Sequence[MemoryRow], retry: Any = None, timeout: Any = None) -> list[Any]:
        """Apply each row's cells; one status per row, NOT_FOUND (nothing applied) for a row that
        writes to a family the table lacks, as Bigtable answers."""
        statuses = []
        with self._lock:
            for row in rows:
                unknown = sorted({family for family, _, _ in row.mutations if family} - self.families)
                if unknown:
                    message = f"column family {unknown[0]!r} does not exist"
                    statuses.append(status_pb2.Status(code=code_pb2.NOT_FOUND, message=message))
                    continue
                stamp = next(self._clock)
                if row.row_key not in self._rows:
                    bisect.insort(self._keys, row.row_key)
                cells = self._rows.setdefault(row.row_key, {})
                for family, qualifier, value in row.mutations:
                    if (family, qualifier, value) == DELETE_ROW:
                        cells.clear()
                        continue
                    cells.setdefault((family, qualifier), []).insert(0, (stamp, value))
                if not cells:
                    del self._rows[row.row_key]
                    self._keys.remove(row.row_key)
                statuses.append(status_pb2.Status(code=code_pb2.OK))
        return statuses

    # --- reads ----------------------------------------------------------------------------------

    def read_rows(
        self,
        start_key: bytes | None = None,
        end_key: bytes | None = None,
        limit: int | None = None,
        filter_: row_filters.RowFilter | None = None,
        end_inclusive: bool = False,
        row_set: RowSet | None = None,
        retry: Any = None,
    ) -> Iterator[ReadRow]:
        """The rows in [start_key, end_key) (or in row_set: its keys and ranges; empty or None: the
        whole table), in key order, filtered; at most `limit` rows (None or 0: no limit)."""
        # The client refuses these two before sending anything; so does this table.
        if row_set is not None and (start_key is not None or end_key is not None):
            raise ValueError("Row range and row set cannot be set simultaneously")
        if start_key and end_key and start_key > end_key:
            raise ValueError("start_key must be less than or equal to end_key")
        with self._lock:
            if row_set is not None and (row_set.row_keys or row_set.row_ranges):
                chosen = {k for k in row_set.row_keys if k in self._rows}
                for r in row_set.row_ranges:  # each range by bisection, so many ranges stay cheap
                    low = bisect.bisect_left(self._keys, r.start_key) if r.start_key else 0
                    high = bisect.bisect_right(self._keys, r.end_key) if r.end_key else len(self._keys)
                    chosen.update(
                        k
                        for k in self._keys[low:high]
                        if _in_range(k, r.start_key, r.end_key, r.start_is_inclusive, r.end_is_inclusive)
                    )
                keys: Iterable[bytes] = sorted(chosen)
            else:
                low = bisect.bisect_left(self._keys, start_key) if start_key else 0
                high = len(self._keys)
                if end_key:
                    high = (bisect.bisect_right if end_inclusive else bisect.bisect_left)(self._keys, end_key)
                keys = self._keys[low:high]
            found = []
            for key in keys:
                cells = _apply_filter(filter_, self._flat_cells(key))
                if cells:
                    found.append(_read_row(key, cells))
                    if limit and len(found) >= limit:
                        break
        return iter(found)

    def read_row(self, row_key: bytes, filter_: row_filters.RowFilter | None = None) -> ReadRow | None:
        """One row, filtered; None when it does not exist or the filter leaves no cell."""
        with self._lock:
            if row_key not in self._rows:
                return None
            cells = _apply_filter(filter_, self._flat_cells(row_key))
        return _read_row(row_key, cells) if cells else None

    def row_keys(self) -> list[bytes]:
        """Every row key, in order (for a test's own checks)."""
        with self._lock:
            return list(self._keys)

    def _flat_cells(self, key: bytes) -> list[_FlatCell]:
        # Bigtable's order: by family, then qualifier (bytes), then newest first.
        return [
            (family, qualifier, stamp, value)
            for (family, qualifier), versions in sorted(self._rows[key].items())
            for stamp, value in versions
        ]


def _in_range(key: bytes, start: bytes | None, end: bytes | None, start_inclusive: bool, end_inclusive: bool) -> bool:
    """Empty or None bounds are open, as in Bigtable."""
    if start and (key < start or (key == start and not start_inclusive)):
        return False
    return not (end and (key > end or (key == end and not end_inclusive)))


def _read_row(key: bytes, cells: list[_FlatCell]) -> ReadRow:
    out: dict[str, dict[bytes, list[Cell]]] = {}
    for family, qualifier, stamp, value in cells:
        out.setdefault(family, {}).setdefault(qualifier, []).append(Cell(value, stamp))
    return ReadRow(key, out)


def _apply_filter(filter_: row_filters.RowFilter | None, cells: list[_FlatCell]) -> list[_FlatCell]:
    """The cells of one row that pass `filter_`, for the filters common/store.py builds."""
    if filter_ is None:
        return cells
    if isinstance(filter_, row_filters.RowFilterChain):
        for part in filter_.filters:
            cells = _apply_filter(part, cells)
        return cells
    if isinstance(filter_, row_filters.RowFilterUnion):
        merged = [cell for part in filter_.filters for cell in _apply_filter(part, cells)]
        return sorted(merged, key=lambda c: (c[0], c[1], -c[2]))
    if isinstance(filter_, row_filters.FamilyNameRegexFilter):
        pattern = re.compile(_regex_text(filter_.regex), re.DOTALL)
        return [c for c in cells if pattern.fullmatch(c[0])]
    if isinstance(filter_, row_filters.ColumnQualifierRegexFilter):
        pattern_bytes = re.compile(_to_bytes(filter_.regex), re.DOTALL)
        return [c for c in cells if pattern_bytes.fullmatch(c[1])]
    if isinstance(filter_, row_filters.CellsColumnLimitFilter):
        kept: list[_FlatCell] = []
        for _, group in itertools.groupby(cells, key=lambda c: (c[0], c[1])):
            kept.extend(itertools.islice(group, filter_.num_cells))
        return kept
    if isinstance(filter_, row_filters.CellsRowLimitFilter):
        return cells[: filter_.num_cells]
    if isinstance(filter_, row_filters.StripValueTransformerFilter):
        return [(f, q, t, b"") for f, q, t, _ in cells] if filter_.flag else cells
    raise TypeError(f"MemoryTable does not understand the row filter {type(filter_).__name__}")
