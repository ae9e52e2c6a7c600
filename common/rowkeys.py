"""Every Bigtable row key is built and parsed here, and nowhere else.

Per-user rows start with the user id and '#'. User ids never contain '#' (0x23), and '#' sorts
below every character a user id may hold, so the range [user + '#', user + '$') holds exactly one
user's rows: a scan for "u1" never returns "u10". Times are zero-padded so keys sort in time order.

  dcflist   <user_id>#<event epoch microseconds, 16 digits>#<transaction_id>   one per transaction
  dcfbhour  <user_id>#<hour start epoch seconds, 10 digits>                     one per user-hour
  dcfcat    <user_id>#<hour start epoch seconds, 10 digits>#cat                 the user-hour per category
Global rows start with '~', which no user id may hold, so they sort after every user's rows:
  dcfbmin   ~minute#<minute start epoch seconds>        count and sum of all users for that minute
  dcfcat    ~cathour#<hour start epoch seconds>         all users' count and sum per category, that hour
  dcfcat    ~catmin#<minute start epoch seconds>        the same per minute
  dcftime   ~latest#<salt, 1 hex digit>#<inverted event epoch microseconds, 16 digits>#<transaction_id>
                                                        every transaction, newest first within a salt
  dcfblock  <user_id>#<block start epoch seconds, 10 digits>#blk<span hours, 2 digits>
                                                        the user's sums over an aligned block of 4, 16 or 64 hours
  dcftop    ~top#<shard, 1 hex digit>#<CUR>#<span hours, 2 digits>#<start epoch seconds>
                #<2**63-1 - sum, 20 digits>#<user_id>
                                                        one per user-currency and hour or block: the top-spender index
  dcftop    ~tophours#<CUR>#<hour start epoch seconds>  the hours the index holds rows of (markers)
  dcfuser   ~user#<user_id>                             the user directory (for the picker)
  dcfkll    ~kllhour#<hour start epoch seconds>         KLL sketch of all users' amounts per currency
  dcfkll    ~klluser#<user_id>#<hour start epoch seconds>   KLL sketch of one user's amounts per currency
  dcfid     ~id#<4 hex digits of the id's hash>#<transaction_id>   the counted copy of each id
  dcfid     ~conflict#<run id, 10 digits>#<transaction_id>#<message id>  a copy that differed
  dcfmeta   ~run#<run id, 10 digits>, ~job              job bookkeeping
  dcfmeta   ~file#<spool-relative path>                 a spool file the job has processed
  dcfmeta   ~dir#<dt=YYYY-MM-DD>                        a spool folder every file of which is processed
  dcfmeta   ~late#<publish epoch microseconds, 16 digits>#<transaction_id>  a row set aside as late

A user-hour's category row sorts just after its hour bucket ('#' is below every digit) and
before the user's transaction rows of that second, so a scan of transaction rows (filtered on
dcflist) never returns it; it is read by key, like the buckets.

The time index spreads one run's writes (which all land near "now") over TIME_SALTS key ranges,
so they are not one tablet's hotspot; "the latest n" reads the head of each salt and merges.

The top-spender index holds one row per user-currency and hour, and per user-currency and aligned
block of 4, 16 or 64 hours (never a row that grows with the number of card holders), its key
carrying the sum so a forward scan of one list (shard, currency, span, start) reads the highest
first; the shard (a hash of the user id, TOP_SHARDS values) spreads a run's writes, which all land
in the current hour and blocks, over TOP_SHARDS key ranges. A user's rows all lie in one shard.

The id index is keyed by the transaction id alone, so "was this id counted?" is one point read
whatever the copy carries; the hash prefix spreads the ids of one sequence over the key space.
"""

from __future__ import annotations

import hashlib

from common.message import TRANSACTION_ID, USER_ID
from common.timeutil import HOUR_S, HOUR_US, MINUTE_US

SEP = "#"
GLOBAL = "~"


class RowKeyError(ValueError):
    """A row key that does not follow the schema."""


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """[start, end) of every key that starts with `prefix` (which must not end in 0xff)."""
    return prefix, prefix[:-1] + bytes([prefix[-1] + 1])


def _user(user_id: str) -> str:
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise RowKeyError(f"user_id must match [A-Za-z0-9_.-]{{1,64}}, got {user_id!r}")
    return user_id


def user_prefix(user_id: str) -> bytes:
    """The prefix every row of this user starts with."""
    return f"{_user(user_id)}{SEP}".encode()


def user_range(user_id: str) -> tuple[bytes, bytes]:
    """[start, end) holding all of one user's rows and nothing else."""
    return f"{_user(user_id)}{SEP}".encode(), f"{user_id}{chr(ord(SEP) + 1)}".encode()


def transaction_key(user_id: str, event_time_us: int, transaction_id: str) -> bytes:
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise RowKeyError(f"transaction_id must match [A-Za-z0-9_.:-]{{1,128}}, got {transaction_id!r}")
    if not 0 <= event_time_us < 10**16:
        raise RowKeyError(f"event time out of range: {event_time_us}")
    return f"{_user(user_id)}{SEP}{event_time_us:016d}{SEP}{transaction_id}".encode()


def parse_transaction_key(key: bytes) -> tuple[str, int, str]:
    """-> (user_id, event_time_us, transaction_id)"""
    try:
        user_id, micros, transaction_id = key.decode().split(SEP, 2)
        return _user(user_id), int(micros), transaction_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not a transaction row key: {key!r}") from exc


def transaction_range(user_id: str, start_us: int, end_us: int) -> tuple[bytes, bytes]:
    """[start, end) of one user's transaction rows with start_us <= event time < end_us."""
    _user(user_id)
    start_us, end_us = max(0, start_us), max(0, min(end_us, 10**16 - 1))
    return f"{user_id}{SEP}{start_us:016d}".encode(), f"{user_id}{SEP}{end_us:016d}".encode()


def hour_start_us(event_time_us: int) -> int:
    return event_time_us - event_time_us % HOUR_US


def minute_start_us(event_time_us: int) -> int:
    return event_time_us - event_time_us % MINUTE_US


def hour_bucket_key(user_id: str, hour_start_s: int) -> bytes:
    if hour_start_s % HOUR_S:
        raise RowKeyError(f"hour start must be a whole hour, got {hour_start_s}")
    return f"{_user(user_id)}{SEP}{hour_start_s:010d}".encode()


def parse_hour_bucket_key(key: bytes) -> tuple[str, int]:
    try:
        user_id, hour = key.decode().split(SEP)
        if len(hour) != 10:
            raise ValueError(hour)
        return _user(user_id), int(hour)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not an hour bucket row key: {key!r}") from exc


def hour_bucket_range(user_id: str, start_hour_s: int, end_hour_s: int) -> tuple[bytes, bytes]:
    """[start, end) of a user's hour buckets whose hour start lies in [start_hour_s, end_hour_s)."""
    _user(user_id)
    return f"{user_id}{SEP}{max(0, start_hour_s):010d}".encode(), f"{user_id}{SEP}{max(0, end_hour_s):010d}".encode()


def category_hour_key(user_id: str, hour_start_s: int) -> bytes:
    """The row of one user-hour's totals per merchant category: <user>#<hour>#cat."""
    return hour_bucket_key(user_id, hour_start_s) + f"{SEP}cat".encode()


def category_all_hour_key(hour_start_s: int) -> bytes:
    """The row of every user's totals per merchant category in one hour."""
    return f"{GLOBAL}cathour{SEP}{hour_start_s:010d}".encode()


def category_all_minute_key(minute_start_s: int) -> bytes:
    """The row of every user's totals per merchant category in one minute."""
    return f"{GLOBAL}catmin{SEP}{minute_start_s:010d}".encode()


def parse_category_all_key(key: bytes) -> int:
    """-> the hour or minute start (epoch seconds) of a ~cathour or ~catmin row"""
    for kind in ("cathour", "catmin"):
        prefix = f"{GLOBAL}{kind}{SEP}".encode()
        if key.startswith(prefix):
            return int(key[len(prefix) :])
    raise RowKeyError(f"not a category row key: {key!r}")


TIME_PREFIX = f"{GLOBAL}latest{SEP}"
TIME_SALTS = 16
_TIME_MAX_US = 10**16 - 1


def time_salt(transaction_id: str) -> int:
    """Which of the TIME_SALTS key ranges a transaction's time-index row lies in."""
    return hashlib.blake2b(transaction_id.encode(), digest_size=1).digest()[0] % TIME_SALTS


def time_index_key(event_time_us: int, transaction_id: str, user_id: str) -> bytes:
    """The time-index row of one transaction: ~latest#<salt>#<inverted event µs>#<user>#<id>.
    A forward scan of one salt reads newest first."""
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise RowKeyError(f"transaction_id must match [A-Za-z0-9_.:-]{{1,128}}, got {transaction_id!r}")
    if not 0 <= event_time_us <= _TIME_MAX_US:
        raise RowKeyError(f"event time out of range: {event_time_us}")
    salt = time_salt(transaction_id)
    inverted = _TIME_MAX_US - event_time_us
    return f"{TIME_PREFIX}{salt:x}{SEP}{inverted:016d}{SEP}{_user(user_id)}{SEP}{transaction_id}".encode()


def parse_time_index_key(key: bytes) -> tuple[str, int, str]:
    """-> (user_id, event_time_us, transaction_id)"""
    prefix = TIME_PREFIX.encode()
    try:
        if not key.startswith(prefix):
            raise ValueError(key)
        _, inverted, user_id, transaction_id = key[len(prefix) :].decode().split(SEP, 3)
        return _user(user_id), _TIME_MAX_US - int(inverted), transaction_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not a time-index row key: {key!r}") from exc


def time_index_ranges(start_us: int, end_us: int) -> list[tuple[bytes, bytes]]:
    """Per salt, [start, end) of the time-index rows with start_us <= event time < end_us (newest
    first within each)."""
    start_us, end_us = max(0, start_us), max(0, min(end_us, _TIME_MAX_US + 1))
    if start_us >= end_us:
        return []
    high, low = _TIME_MAX_US - (end_us - 1), _TIME_MAX_US - start_us + 1
    # low is 10**16 (17 digits) when start_us is 0: the end of the salt's range then
    return [
        (
            f"{TIME_PREFIX}{salt:x}{SEP}{high:016d}".encode(),
            f"{TIME_PREFIX}{salt:x}{SEP}{low:016d}".encode()
            if low <= _TIME_MAX_US
            else prefix_range(f"{TIME_PREFIX}{salt:x}{SEP}".encode())[1],
        )
        for salt in range(TIME_SALTS)
    ]


def minute_key(minute_start_s: int) -> bytes:
    return f"{GLOBAL}minute{SEP}{minute_start_s:010d}".encode()


def parse_minute_key(key: bytes) -> int:
    prefix = f"{GLOBAL}minute{SEP}".encode()
    if not key.startswith(prefix):
        raise RowKeyError(f"not a minute row key: {key!r}")
    return int(key[len(prefix) :])


TOP_PREFIX = f"{GLOBAL}top{SEP}"
TOP_SHARDS = 16
# The hours one top-spender list covers: the hour (its counter is the hour bucket) and aligned
# blocks of 4, 16 and 64 hours (their counters are dcfblock rows). Any window of 1 to 168 whole
# hours is a handful of these lists (see jobs/aggregate/README.md).
TOP_SPANS = (1, 4, 16, 64)
BLOCK_SPANS = TOP_SPANS[1:]
_SUM_OFFSET = 2**63 - 1  # a signed 64-bit sum s is stored as _SUM_OFFSET - s: 0 .. 2**64 - 1, 20 digits


def top_shard(user_id: str) -> int:
    """Which of the TOP_SHARDS key ranges a user's top-spender index rows lie in."""
    return hashlib.blake2b(_user(user_id).encode(), digest_size=1).digest()[0] % TOP_SHARDS


def _inverted_sum(sum_minor: int) -> str:
    if not -(2**63) <= sum_minor <= _SUM_OFFSET:
        raise RowKeyError(f"sum out of the signed 64-bit range: {sum_minor}")
    return f"{_SUM_OFFSET - sum_minor:020d}"


def _span(span_hours: int, start_s: int) -> int:
    if span_hours not in TOP_SPANS:
        raise RowKeyError(f"span must be one of {TOP_SPANS} hours, got {span_hours}")
    if start_s % (span_hours * HOUR_S):
        raise RowKeyError(f"a {span_hours} h block must start at a multiple of {span_hours} h, got {start_s}")
    return span_hours


def block_start_s(hour_start_s: int, span_hours: int) -> int:
    """The start (epoch s) of the aligned block of `span_hours` hours that holds the hour."""
    return hour_start_s - hour_start_s % (_span(span_hours, 0) * HOUR_S)


def block_key(user_id: str, span_hours: int, start_s: int) -> bytes:
    """The counter row of one user's block of `span_hours` (4, 16 or 64) aligned hours:
    <user>#<block start epoch s, 10 digits>#blk<span, 2 digits>. It sorts beside the user's bucket
    of the block's first hour (before its category row and its transaction rows)."""
    if span_hours not in BLOCK_SPANS:
        raise RowKeyError(f"block span must be one of {BLOCK_SPANS} hours, got {span_hours}")
    _span(span_hours, start_s)
    return f"{_user(user_id)}{SEP}{start_s:010d}{SEP}blk{span_hours:02d}".encode()


def parse_block_key(key: bytes) -> tuple[str, int, int]:
    """-> (user_id, span hours, block start epoch s)"""
    try:
        user_id, start, span = key.decode().split(SEP)
        if len(start) != 10 or not span.startswith("blk"):
            raise ValueError(key)
        return _user(user_id), _span(int(span[3:]), int(start)), int(start)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not a block counter row key: {key!r}") from exc


def _top_list_prefix(shard: int, currency: str, start_s: int, span_hours: int) -> str:
    _span(span_hours, start_s)
    return f"{TOP_PREFIX}{shard:x}{SEP}{currency}{SEP}{span_hours:02d}{SEP}{start_s:010d}{SEP}"


def top_index_key(user_id: str, currency: str, start_s: int, sum_minor: int, span_hours: int = 1) -> bytes:
    """The top-spender index row of one user's sum in one currency over one hour (span 1) or one
    aligned block of span_hours hours: ~top#<shard>#<CUR>#<span>#<start>#<2**63-1 - sum, 20 digits>#<user>.
    Within one shard, currency, span and start (one list), a forward scan reads the highest sums first."""
    prefix = _top_list_prefix(top_shard(user_id), currency, start_s, span_hours)
    return f"{prefix}{_inverted_sum(sum_minor)}{SEP}{user_id}".encode()


def parse_top_index_key(key: bytes) -> tuple[str, str, int, int, int]:
    """-> (user_id, currency, span hours, start epoch s, sum in minor units)"""
    prefix = TOP_PREFIX.encode()
    try:
        if not key.startswith(prefix):
            raise ValueError(key)
        _, currency, span, start, inverted, user_id = key[len(prefix) :].decode().split(SEP)
        if len(span) != 2 or len(start) != 10 or len(inverted) != 20:
            raise ValueError(key)
        return _user(user_id), currency, _span(int(span), int(start)), int(start), _SUM_OFFSET - int(inverted)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not a top-spender index row key: {key!r}") from exc


def top_index_range(
    shard: int,
    currency: str,
    start_s: int,
    at_least: int | None = None,
    below: int | None = None,
    span_hours: int = 1,
) -> tuple[bytes, bytes]:
    """[start, end) of one list's index rows (one shard, currency, span and start) with
    at_least <= sum < below (None: unbounded on that side), highest sum first."""
    prefix = _top_list_prefix(shard, currency, start_s, span_hours)
    low, high = prefix_range(prefix.encode())
    if below is not None:
        low = f"{prefix}{_inverted_sum(below - 1)}".encode() if below - 1 >= -(2**63) else high
    if at_least is not None and at_least > -(2**63):
        high = f"{prefix}{_inverted_sum(at_least - 1)}".encode()
    return low, max(low, high)


TOP_HOURS_PREFIX = f"{GLOBAL}tophours{SEP}"


def top_hour_key(currency: str, hour_start_s: int) -> bytes:
    """The marker row saying the top-spender index may hold rows of this currency and hour:
    ~tophours#<CUR>#<hour start epoch s>. Written before the hour's first index row, never removed."""
    _span(1, hour_start_s)
    return f"{TOP_HOURS_PREFIX}{currency}{SEP}{hour_start_s:010d}".encode()


def top_hours_range(currency: str, first_hour_s: int, end_hour_s: int) -> tuple[bytes, bytes]:
    """[start, end) of the marker rows of one currency with first_hour_s <= hour < end_hour_s."""
    head = f"{TOP_HOURS_PREFIX}{currency}{SEP}"
    return f"{head}{max(0, first_hour_s):010d}".encode(), f"{head}{max(0, end_hour_s):010d}".encode()


def parse_top_hour_key(key: bytes) -> tuple[str, int]:
    """-> (currency, hour start epoch s) of a ~tophours# marker row"""
    prefix = TOP_HOURS_PREFIX.encode()
    try:
        if not key.startswith(prefix):
            raise ValueError(key)
        currency, hour = key[len(prefix) :].decode().split(SEP)
        if len(hour) != 10:
            raise ValueError(key)
        return currency, int(hour)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowKeyError(f"not a top-spender hours row key: {key!r}") from exc


def top_index_range_all() -> tuple[bytes, bytes]:
    """[start, end) of every top-spender index row."""
    return prefix_range(TOP_PREFIX.encode())


HOUR_SKETCH_PREFIX = f"{GLOBAL}kllhour{SEP}"
USER_SKETCH_PREFIX = f"{GLOBAL}klluser{SEP}"


def hour_sketch_key(hour_start_s: int) -> bytes:
    """The row of every user's amount sketches (one cell per currency) for one UTC hour."""
    if hour_start_s % HOUR_S:
        raise RowKeyError(f"hour start must be a whole hour, got {hour_start_s}")
    return f"{HOUR_SKETCH_PREFIX}{hour_start_s:010d}".encode()


def hour_sketch_range(start_hour_s: int, end_hour_s: int) -> tuple[bytes, bytes]:
    """[start, end) of the all-users sketch rows whose hour start lies in [start_hour_s, end_hour_s)."""
    return (
        f"{HOUR_SKETCH_PREFIX}{max(0, start_hour_s):010d}".encode(),
        f"{HOUR_SKETCH_PREFIX}{max(0, end_hour_s):010d}".encode(),
    )


def user_sketch_key(user_id: str, hour_start_s: int) -> bytes:
    """The row of one user's amount sketches (one cell per currency) for one UTC hour. Kept apart
    from the user's own rows so a scan of those never walks them, and contiguous per user so a
    range of hours is one short scan."""
    if hour_start_s % HOUR_S:
        raise RowKeyError(f"hour start must be a whole hour, got {hour_start_s}")
    return f"{USER_SKETCH_PREFIX}{_user(user_id)}{SEP}{hour_start_s:010d}".encode()


def user_sketch_range(user_id: str, start_hour_s: int, end_hour_s: int) -> tuple[bytes, bytes]:
    """[start, end) of one user's sketch rows whose hour start lies in [start_hour_s, end_hour_s)."""
    head = f"{USER_SKETCH_PREFIX}{_user(user_id)}{SEP}"
    return f"{head}{max(0, start_hour_s):010d}".encode(), f"{head}{max(0, end_hour_s):010d}".encode()


def parse_sketch_key(key: bytes) -> tuple[str | None, int]:
    """-> (user_id, or None for an all-users row; hour start epoch seconds)"""
    text = key.decode("ascii", "replace")
    try:
        if text.startswith(HOUR_SKETCH_PREFIX):
            return None, int(text[len(HOUR_SKETCH_PREFIX) :])
        if text.startswith(USER_SKETCH_PREFIX):
            user_id, hour = text[len(USER_SKETCH_PREFIX) :].split(SEP)
            return _user(user_id), int(hour)
    except ValueError:
        pass
    raise RowKeyError(f"not a sketch row key: {key!r}")


def user_directory_key(user_id: str) -> bytes:
    return f"{GLOBAL}user{SEP}{_user(user_id)}".encode()


def user_directory_prefix(prefix: str = "") -> bytes:
    return f"{GLOBAL}user{SEP}{prefix}".encode()


def user_directory_range(prefix: str = "") -> tuple[bytes, bytes]:
    """[start, end) of the directory rows whose user id starts with `prefix` ("" = every user)."""
    if prefix and not USER_ID.fullmatch(prefix):
        raise RowKeyError(f"user id prefix must match [A-Za-z0-9_.-]{{0,64}}, got {prefix!r}")
    return prefix_range(user_directory_prefix(prefix))


def parse_user_directory_key(key: bytes) -> str:
    return key.decode().split(SEP, 1)[1]


def run_key(run_id: int) -> bytes:
    return f"{GLOBAL}run{SEP}{run_id:010d}".encode()


JOB_KEY = f"{GLOBAL}job".encode()


FILE_PREFIX = f"{GLOBAL}file{SEP}"


def processed_file_key(relative_path: str) -> bytes:
    """The bookkeeping row of one processed spool file, named by its path relative to spool_dir."""
    if not relative_path or relative_path.startswith("/") or "\\" in relative_path:
        raise RowKeyError(f"spool file path must be relative with '/' separators, got {relative_path!r}")
    return f"{FILE_PREFIX}{relative_path}".encode()


def parse_processed_file_key(key: bytes) -> str:
    """-> the spool-relative path"""
    prefix = FILE_PREFIX.encode()
    if not key.startswith(prefix):
        raise RowKeyError(f"not a processed-file row key: {key!r}")
    return key[len(prefix) :].decode()


def processed_file_range(path_prefix: str = "") -> tuple[bytes, bytes]:
    """[start, end) of the processed-file rows whose path starts with path_prefix."""
    start = f"{FILE_PREFIX}{path_prefix}".encode()
    return start, start + b"\xff"


ID_PREFIX = f"{GLOBAL}id{SEP}"


def id_index_key(transaction_id: str) -> bytes:
    """The id index row of one transaction id: ~id#<4 hex digits of its hash>#<id>."""
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise RowKeyError(f"transaction_id must match [A-Za-z0-9_.:-]{{1,128}}, got {transaction_id!r}")
    spread = hashlib.blake2b(transaction_id.encode(), digest_size=2).hexdigest()
    return f"{ID_PREFIX}{spread}{SEP}{transaction_id}".encode()


def parse_id_index_key(key: bytes) -> str:
    """-> the transaction id"""
    prefix = ID_PREFIX.encode()
    if not key.startswith(prefix) or key[len(prefix) + 4 : len(prefix) + 5] != SEP.encode():
        raise RowKeyError(f"not an id index row key: {key!r}")
    return key[len(prefix) + 5 :].decode()


def id_index_range() -> tuple[bytes, bytes]:
    """[start, end) of every id index row."""
    return prefix_range(ID_PREFIX.encode())


CONFLICT_PREFIX = f"{GLOBAL}conflict{SEP}"


def conflict_key(run_id: int, transaction_id: str, message_id: str) -> bytes:
    """A copy of a transaction id whose content differs from the counted one, found by `run_id`."""
    return f"{CONFLICT_PREFIX}{run_id:010d}{SEP}{transaction_id}{SEP}{message_id}".encode()


def conflict_range(first_run: int = 0, end_run: int = 10**10 - 1) -> tuple[bytes, bytes]:
    """[start, end) of the conflict rows found by runs first_run <= run < end_run."""
    return f"{CONFLICT_PREFIX}{first_run:010d}".encode(), f"{CONFLICT_PREFIX}{end_run:010d}".encode()


DIR_PREFIX = f"{GLOBAL}dir{SEP}"


def spool_dir_key(name: str) -> bytes:
    """The bookkeeping row of one spool folder under transactions/ (e.g. 'dt=2026-11-30')."""
    if not name or "/" in name:
        raise RowKeyError(f"spool folder name must be one path part, got {name!r}")
    return f"{DIR_PREFIX}{name}".encode()


def parse_spool_dir_key(key: bytes) -> str:
    prefix = DIR_PREFIX.encode()
    if not key.startswith(prefix):
        raise RowKeyError(f"not a spool folder row key: {key!r}")
    return key[len(prefix) :].decode()


def spool_dir_range() -> tuple[bytes, bytes]:
    return prefix_range(DIR_PREFIX.encode())


LATE_PREFIX = f"{GLOBAL}late{SEP}"


def late_key(publish_time_us: int, transaction_id: str) -> bytes:
    """A transaction set aside as late, in publish-time order."""
    return f"{LATE_PREFIX}{max(0, publish_time_us):016d}{SEP}{transaction_id}".encode()


def late_range(start_us: int, end_us: int) -> tuple[bytes, bytes]:
    """[start, end) of the late rows published in [start_us, end_us)."""
    start_us, end_us = max(0, start_us), max(0, min(end_us, 10**16 - 1))
    return f"{LATE_PREFIX}{start_us:016d}".encode(), f"{LATE_PREFIX}{end_us:016d}".encode()
