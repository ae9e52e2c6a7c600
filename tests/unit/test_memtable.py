"""The in-memory table refuses what it cannot do faithfully instead of answering something else.
(What it does do is compared with the emulator in tests/integration/test_memtable_contract.py.)"""

from __future__ import annotations

import pytest
from google.cloud.bigtable import row_filters
from google.cloud.bigtable.row_set import RowSet
from support.memtable import MemoryTable

from common import store


@pytest.fixture
def table() -> MemoryTable:
    memory = MemoryTable()
    rows = [(key, [(store.META, b"run", b"1"), (store.USER, b"seen", b"1")]) for key in (b"a", b"b", b"c")]
    assert store.write_cell_rows(memory, rows) == []
    return memory


def test_a_filter_it_does_not_know_is_refused(table: MemoryTable) -> None:
    with pytest.raises(TypeError, match="ValueRegexFilter"):
        list(table.read_rows(filter_=row_filters.ValueRegexFilter(b"1")))


def test_a_range_and_a_row_set_together_are_refused_as_the_client_does(table: MemoryTable) -> None:
    row_set = RowSet()
    row_set.add_row_key(b"a")
    with pytest.raises(ValueError, match="simultaneously"):
        table.read_rows(start_key=b"a", row_set=row_set)


def test_the_limit_counts_rows_returned_not_rows_scanned(table: MemoryTable) -> None:
    assert store.write_cells(table, b"aa", store.LIST, {b"amount_minor": b"5"}) == []
    only_user = row_filters.FamilyNameRegexFilter(store.USER)
    assert [row.row_key for row in table.read_rows(filter_=only_user, limit=2)] == [b"a", b"b"]
    assert table.row_keys() == [b"a", b"aa", b"b", b"c"]


def test_the_newest_value_comes_first(table: MemoryTable) -> None:
    assert store.write_cells(table, b"a", store.META, {b"run": b"2"}) == []
    row = table.read_row(b"a")
    assert row is not None
    assert [cell.value for cell in row.cells[store.META][b"run"]] == [b"2", b"1"]
    assert store.read_row_cells(table, b"a", store.META) == {b"run": b"2"}
