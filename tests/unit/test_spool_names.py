"""Spool file names: unique per writer (host, pid, a random tag, a count), sorted by write time, and
read by the one listing rule alongside the names older versions wrote."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from common import spool

AT = datetime(2026, 11, 30, 8, 15, 2, 7, tzinfo=UTC)


def test_a_name_holds_the_time_host_pid_tag_and_the_writers_count() -> None:
    writer = spool.WriterName(host="spool-a.example.com", pid=4321, tag="c0ffee01")
    names = [spool.new_file_name(spool.TRANSACTIONS, AT, writer) for _ in range(3)]
    assert names == [
        "transactions/dt=2026-11-30/part-20261130T081502000007Z-spool-a-example-com-4321-c0ffee01-1.parquet",
        "transactions/dt=2026-11-30/part-20261130T081502000007Z-spool-a-example-com-4321-c0ffee01-2.parquet",
        "transactions/dt=2026-11-30/part-20261130T081502000007Z-spool-a-example-com-4321-c0ffee01-3.parquet",
    ]
    dead = spool.new_file_name(spool.DEAD_LETTER, AT, writer)
    assert dead == "dead-letter/dt=2026-11-30/part-20261130T081502000007Z-spool-a-example-com-4321-c0ffee01-4.parquet"


def test_a_host_name_is_cut_to_safe_characters() -> None:
    assert spool.WriterName(host="_.weird host/名前__").host == "weird-host"
    assert spool.WriterName(host="...").host == "host"
    assert len(spool.WriterName(host="h" * 100).host) == 40


def test_writers_with_the_same_host_and_pid_draw_different_tags() -> None:
    # A restarted spooler that got its predecessor's pid (pid 1 in a container) names files apart.
    tags = {spool.WriterName(host="box", pid=1).tag for _ in range(50)}
    assert len(tags) == 50
    assert all(re.fullmatch(r"[0-9a-f]{8}", tag) for tag in tags)


def test_names_of_several_writers_at_the_same_instant_never_clash() -> None:
    # Even writers that drew the same tag: host and pid keep them apart, the count each one's files.
    writers = [spool.WriterName(host=host, pid=pid, tag="same") for host, pid in (("box", 1), ("box", 2), ("other", 1))]
    names: list[str] = []
    lock = threading.Lock()

    def name_many(writer: spool.WriterName) -> None:
        made = [spool.new_file_name(spool.TRANSACTIONS, AT, writer) for _ in range(2000)]
        with lock:
            names.extend(made)

    threads = [threading.Thread(target=name_many, args=(w,)) for w in writers for _ in range(2)]  # 2 threads each
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(names) == 12_000 and len(set(names)) == 12_000


def test_names_sort_by_write_time_across_writers() -> None:
    late_host = spool.WriterName(host="aaa", pid=9, tag="00000000")
    early_host = spool.WriterName(host="zzz", pid=1, tag="ffffffff")
    first = spool.new_file_name(spool.TRANSACTIONS, AT, early_host)
    second = spool.new_file_name(spool.TRANSACTIONS, AT.replace(microsecond=8), late_host)
    assert sorted([second, first]) == [first, second]


def test_the_process_writer_is_made_once_per_process() -> None:
    assert spool.process_writer() is spool.process_writer()


def test_old_and_new_names_are_listed_together(tmp_path: Path) -> None:
    table = pa.table({"transaction_id": ["t1"]})
    old = tmp_path / "transactions" / "dt=2026-11-30" / "part-20261130T081501000000Z-0123456789ab.parquet"
    spool.write_atomic(table, old)
    new = spool.write_file(table, str(tmp_path), spool.new_file_name(spool.TRANSACTIONS, AT))
    files = spool.list_files(str(tmp_path), spool.TRANSACTIONS)
    assert files == [old, Path(new)]
