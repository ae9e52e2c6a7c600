"""The private attributes of google-cloud-bigtable that common/bigtable_private.py relies on: still
there, and still doing what the product needs, in the installed version. A failure here names what
changed; the module's docstring says why each is used and what replacing it would cost.

The client is pointed at a local port where nothing listens: no emulator, nothing is sent anywhere."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigtable
from support.memtable import MemoryTable

from common import bigtable_private, store

warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")


@pytest.fixture
def refused_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A legacy Table whose client talks to 127.0.0.1:<a port nobody listens on>."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", f"127.0.0.1:{port}")
    client = bigtable.Client(project="p")
    yield client.instance("i").table("t")


def test_the_private_attributes_are_where_the_module_reaches_for_them(refused_table: Any) -> None:
    client = bigtable_private.client_of(refused_table)
    assert isinstance(client, bigtable.Client), "Table._instance._client is no longer the legacy Client"
    assert callable(getattr(client.table_data_client, "mutate_rows", None)), "Client.table_data_client.mutate_rows"
    impl = getattr(refused_table, "_table_impl", None)
    missing = [name for name in bigtable_private.READ_TIMEOUT_ATTRIBUTES if not hasattr(impl, name)]
    assert impl is not None and not missing, f"Table._table_impl lacks {missing or 'itself'}"


def test_the_writer_sends_through_the_tables_channel_and_reports_the_server_unreachable(refused_table: Any) -> None:
    send = bigtable_private.bulk_sender(refused_table)
    assert send is not None
    started = time.monotonic()
    with pytest.raises(gexc.ServiceUnavailable):
        send([(b"k", [(store.META, b"q", b"v")])], 10.0)
    assert time.monotonic() - started < 5.0  # no retry inside the call: the store retries failed rows


def test_bounded_reads_give_up_within_their_deadline_instead_of_ten_minutes(refused_table: Any) -> None:
    bigtable_private.bound_read_timeouts(refused_table, operation_s=1.0, attempt_s=0.5)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            refused_table.read_row(b"k")
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=20.0)
    assert outcome, "read_row ignored Table._table_impl.default_read_rows_operation_timeout (still running after 20 s)"
    assert isinstance(outcome[0], gexc.DeadlineExceeded | gexc.ServiceUnavailable | gexc.RetryError), outcome
    assert time.monotonic() - started < 10.0


def test_a_table_that_is_not_the_clients_gets_no_sender_and_the_store_writes_direct_rows() -> None:
    table = MemoryTable()
    assert bigtable_private.bulk_sender(table) is None
    assert store.write_cell_rows(table, [(b"k", [(store.META, b"q", b"v")])]) == []
    assert table.read_row(b"k") is not None


def test_moved_internals_turn_the_fast_writer_off_with_a_warning_naming_them(refused_table: Any) -> None:
    del refused_table._instance
    with pytest.warns(UserWarning, match=r"Table\._instance\._client"):
        assert bigtable_private.bulk_sender(refused_table) is None


class _RecordingDataClient:
    """Stands for Client.table_data_client: keeps the MutateRows request, answers OK for every entry."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def mutate_rows(self, request: Any, retry: Any, timeout: float) -> Iterator[Any]:
        from google.cloud.bigtable_v2.types import bigtable as types

        self.requests.append(types.MutateRowsRequest.pb(request))
        entries = [{"index": i, "status": {"code": 0}} for i in range(len(request.entries))]
        yield types.MutateRowsResponse(entries=entries)


def test_a_delete_row_cell_becomes_a_delete_from_row_mutation_in_order_with_the_set_cells() -> None:
    data = _RecordingDataClient()
    rows = [(b"gone", [store.DELETE_ROW]), (b"kept", [(store.TOP, b"sum", b"7"), (store.META, b"run", b"3")])]
    assert bigtable_private._send(data, "projects/p/instances/i/tables/t", rows, 5.0) == [(0, ""), (0, "")]
    (request,) = data.requests
    gone, kept = request.entries
    assert (gone.row_key, [m.WhichOneof("mutation") for m in gone.mutations]) == (b"gone", ["delete_from_row"])
    assert [(m.set_cell.family_name, m.set_cell.column_qualifier, m.set_cell.value) for m in kept.mutations] == [
        (store.TOP, b"sum", b"7"),
        (store.META, b"run", b"3"),
    ]


def test_a_delete_row_cell_deletes_the_row_of_a_table_that_is_not_the_clients() -> None:
    table = MemoryTable()
    assert store.write_cell_rows(table, [(b"k", [(store.META, b"q", b"v")])]) == []
    assert store.write_cell_rows(table, [(b"k", [store.DELETE_ROW])]) == []
    assert table.read_row(b"k") is None
