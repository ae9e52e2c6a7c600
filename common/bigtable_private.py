"""Every use of google-cloud-bigtable's private attributes in the product, each with what justifies
it. Nothing else reaches into the client; tests/unit/test_bigtable_private.py fails, naming the
attribute, when a new version of the library moves one of them (pinned: requirements.txt).

The bulk writer (`bulk_sender`). The job writes its rows as MutateRows requests built directly as
protobufs and sent through the client's public generated API (`Client.table_data_client`, which
shares the table's channel). The public data API (`google.cloud.bigtable.data`: `bulk_mutate_rows`
over `RowMutationEntry` / `SetCell`) builds a proto-plus object per cell and a dict per mutation:
on job-shaped rows it wrote 0.17 x as many rows per second as this writer, its MutationsBatcher
0.16 x, DirectRow + `mutate_rows` 0.16 x (median of 5 alternating rounds of 20,000 rows,
`python -m bench --quick --stages writer`, 2026-11-30; bench/TUNING.md): far outside the 20 %
within which the public API would replace it. Sending the same protobufs through the private
transport stub, as this writer used to, measured 1.00 x the public generated method, so only one
private step is left: reaching the legacy `Table`'s `Client`, which it does not expose
(`_instance._client`).

The read deadlines (`bound_read_timeouts`). The legacy `Table.read_rows` and `read_row` always run
with the data client's table defaults as their operation timeout (600 s for reads, retrying an
unreachable server all that time). The data API's `Table` takes those defaults as constructor
arguments, but the legacy `Table` builds its data `Table` without them, so they can be set only on
its private `_table_impl`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from google.cloud.bigtable.table import Table
from google.cloud.bigtable_v2.types import bigtable as types

Cell = tuple[str, bytes, bytes]  # (family, qualifier, value), as common.store writes them
DELETE_ROW: Cell = ("", b"", b"")  # in a row's cells: delete the whole row (DeleteFromRow), in order
Status = tuple[int, str]  # (google.rpc code, message); 0 is OK
Sender = Callable[[Sequence[tuple[bytes, Sequence[Cell]]], float], list[Status]]
SERVER_TIME = -1  # SetCell.timestamp_micros: the server stamps the cell, as DirectRow.set_cell does
READ_TIMEOUT_ATTRIBUTES = (
    "default_read_rows_operation_timeout",
    "default_read_rows_attempt_timeout",
    "default_operation_timeout",
    "default_attempt_timeout",
)


class PrivateApiMissing(RuntimeError):
    """The installed google-cloud-bigtable no longer has a private attribute this module uses."""


def client_of(table: Table) -> Any:
    """The legacy `Client` a legacy `Table` was made by. Raises PrivateApiMissing."""
    try:
        return table._instance._client
    except AttributeError as exc:
        raise PrivateApiMissing(f"google.cloud.bigtable.table.Table._instance._client: {exc}") from None


def bulk_sender(table: Any) -> Sender | None:
    """A function that sends rows given as (key, [(family, qualifier, value)]) in one MutateRows
    request (with a per-call timeout in seconds, no retry inside) and returns one (code, message)
    per row, in order. None for a table that is not the client's (the tests' in-memory table), or,
    with a warning, when the client's internals moved (callers then write DirectRow objects)."""
    if not isinstance(table, Table):
        return None
    try:
        gapic = client_of(table).table_data_client
    except PrivateApiMissing as exc:
        warnings.warn(f"the fast Bigtable writer is off, DirectRow objects are used: {exc}", stacklevel=2)
        return None
    return functools.partial(_send, gapic, table.name)


def _send(gapic: Any, table_name: str, rows: Sequence[tuple[bytes, Sequence[Cell]]], timeout: float) -> list[Status]:
    request = types.MutateRowsRequest.pb()(table_name=table_name)
    for key, cells in rows:
        entry = request.entries.add()
        entry.row_key = key
        for family, qualifier, value in cells:
            if not family:  # DELETE_ROW
                entry.mutations.add().delete_from_row.SetInParent()
                continue
            cell = entry.mutations.add().set_cell
            cell.family_name, cell.column_qualifier, cell.value = family, qualifier, value
            cell.timestamp_micros = SERVER_TIME
    statuses: list[Status] = [(2, "no status returned")] * len(rows)  # 2: UNKNOWN
    for response in gapic.mutate_rows(request=types.MutateRowsRequest.wrap(request), retry=None, timeout=timeout):
        for result in types.MutateRowsResponse.pb(response).entries:
            statuses[result.index] = (result.status.code, result.status.message)
    return statuses


def bound_read_timeouts(table: Table, operation_s: float, attempt_s: float) -> None:
    """Make the table's reads (and its other single calls) give up after operation_s seconds in all,
    each attempt after attempt_s, instead of the library's ten minutes. Raises PrivateApiMissing."""
    impl = getattr(table, "_table_impl", None)
    missing = [name for name in READ_TIMEOUT_ATTRIBUTES if not hasattr(impl, name)]
    if impl is None or missing:
        raise PrivateApiMissing(f"google.cloud.bigtable.table.Table._table_impl lacks {missing or 'itself'}")
    impl.default_read_rows_operation_timeout = operation_s
    impl.default_read_rows_attempt_timeout = min(attempt_s, operation_s)
    impl.default_operation_timeout = operation_s
    impl.default_attempt_timeout = min(attempt_s, operation_s)
