"""Property-based tests (hypothesis) of what hostile input reaches first: message parsing, time
parsing and row keys. Valid messages round-trip; anything else is refused with MessageError (or
TimeFormatError, RowKeyError) and never with another exception. The number of examples follows
--heavy; each example is counted in the suite's tally."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.scale import Scale
from support.tally import TALLY

from common import money, rowkeys
from common.message import MessageError, Transaction, parse_message
from common.timeutil import TimeFormatError, parse_duration, parse_rfc3339, parse_time

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
GOOD = {
    "schema_version": 1,
    "transaction_id": "3005e9d2-9973-40b6-b8eb-1e86016902b5",
    "user_id": "u0001",
    "amount": "42.17",
    "currency": "USD",
    "event_time": "2026-11-21T08:00:00.123456Z",
    "merchant_category": "grocery",
}
MAX_MAJOR = 1_000_000  # the default max_abs_amount, in every currency

user_ids = st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=64)
transaction_ids = st.text(alphabet=string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=128)
categories = st.text(alphabet=string.ascii_letters + string.digits + "_ .&/-", min_size=1, max_size=64)
event_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=(NOW + timedelta(days=1)).replace(tzinfo=None), timezones=st.just(UTC)
)
currencies = st.sampled_from(sorted(money.known_currencies()))


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    """Any valid transaction, in any ISO 4217 currency, its amount within the bound in that currency."""
    currency = draw(currencies)
    bound = MAX_MAJOR * 10 ** money.exponent(currency)
    return Transaction(
        draw(transaction_ids),
        draw(user_ids),
        draw(st.integers(min_value=-bound, max_value=bound)),
        currency,
        draw(event_times),
        draw(categories),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12,
)


def examples(scale: Scale) -> settings:
    return settings(max_examples=scale.examples, deadline=None, suppress_health_check=list(HealthCheck))


def parse_or_refuse(data: bytes) -> Transaction | MessageError:
    """parse_message's answer; any exception other than MessageError fails the test."""
    try:
        return parse_message(data, NOW)
    except MessageError as exc:
        assert exc.reason and exc.detail
        return exc


def test_valid_messages_round_trip_through_encode_and_parse(scale: Scale) -> None:
    @examples(scale)
    @given(transactions())
    def check(txn: Transaction) -> None:
        TALLY.fuzzed("message round trips")
        assert parse_message(txn.encode(), NOW) == txn
        assert parse_message(txn.encode(), NOW).encode() == txn.encode()

    check()


def test_arbitrary_bytes_are_refused_only_with_message_error(scale: Scale) -> None:
    @examples(scale)
    @given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
    def check(data: bytes) -> None:
        TALLY.tried_malformed("arbitrary bytes (hypothesis)")
        parse_or_refuse(data)

    check()


def test_a_valid_message_with_any_field_replaced_parses_or_is_refused_by_name(scale: Scale) -> None:
    @examples(scale)
    @given(st.sampled_from(sorted(GOOD)), json_values)
    def check(name: str, value: Any) -> None:
        TALLY.tried_malformed("one field replaced (hypothesis)")
        result = parse_or_refuse(json.dumps({**GOOD, name: value}).encode())
        if isinstance(result, MessageError):
            assert name in result.detail or result.reason in ("bad_json", "oversize", "bad_schema_version")

    check()


def test_csv_lines_with_any_field_parse_or_are_refused(scale: Scale) -> None:
    @examples(scale)
    @given(st.text(max_size=30), st.sampled_from(["{}, 1.00, 1763712000", "u1, {}, 1763712000", "u1, 1.00, {}"]))
    def check(field: str, template: str) -> None:
        TALLY.tried_malformed("csv field (hypothesis)")
        parse_or_refuse(template.replace("{}", field).encode())

    check()


@pytest.mark.parametrize("digits", [4301, 5000, 7500])
@pytest.mark.parametrize(
    ("field", "reason"),
    [("amount", "bad_json"), ("schema_version", "bad_json"), ("user_id", "bad_json"), ("extra", "unknown_field")],
)
def test_a_json_number_too_long_to_read_is_refused_by_name(field: str, reason: str, digits: int) -> None:
    TALLY.tried_malformed("overlong JSON number")
    data = json.dumps({**GOOD, field: 0}).replace(": 0", ": " + "9" * digits, 1).encode()
    with pytest.raises(MessageError) as refused:
        parse_message(data, NOW)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("amount", "form"),
    [
        ("١٢.٥٠", "Arabic-Indic digits"),
        ("１２.５０", "full-width digits"),
        ("१२.५०", "Devanagari digits"),
        ("12.٥٠", "mixed digits"),
    ],
)
def test_amounts_in_digits_other_than_ascii_are_refused(amount: str, form: str) -> None:
    TALLY.tried_malformed("non-ASCII digits")
    with pytest.raises(MessageError) as refused:
        parse_message(json.dumps({**GOOD, "amount": amount}).encode(), NOW)
    assert refused.value.reason == "bad_amount"
    with pytest.raises(MessageError) as refused_csv:
        parse_message(f"u1,{amount},1763712000".encode(), NOW)
    assert refused_csv.value.reason == "bad_amount"


def test_epoch_seconds_in_digits_other_than_ascii_are_refused() -> None:
    TALLY.tried_malformed("non-ASCII digits")
    with pytest.raises(MessageError) as refused:
        parse_message("u1,12.50,١٧٦٣٧١٢٠٠٠".encode(), NOW)
    assert refused.value.reason == "bad_event_time"


# --- time parsing ------------------------------------------------------------------------------


def test_any_text_is_a_time_or_a_time_format_error(scale: Scale) -> None:
    @examples(scale)
    @given(
        st.text(max_size=40)
        | st.from_regex(r"[+-]?\d{1,25}(\.\d{0,12})?\s?(us|ms|s|m|h|d|w)?", fullmatch=True)
        | st.from_regex(r"\d{1,6}-\d{1,2}-\d{1,2}T\d{1,2}:\d{1,2}(:\d{1,2})?(Z|[+-]\d{2}:\d{2})?", fullmatch=True)
    )
    def check(text: str) -> None:
        TALLY.fuzzed("time texts")
        for parse in (lambda: parse_time(text, NOW), lambda: parse_rfc3339(text), lambda: parse_duration(text)):
            try:
                value = parse()
            except TimeFormatError:
                continue
            if isinstance(value, datetime):
                assert value.tzinfo is UTC

    check()


# --- row keys (the gaps next to tests/unit/test_rowkeys.py) -----------------------------------------


def test_hour_bucket_keys_sort_in_time_order_within_a_user(scale: Scale) -> None:
    hours = st.integers(min_value=0, max_value=2_700_000)

    @examples(scale)
    @given(user_ids, hours, hours)
    def check(user_id: str, a: int, b: int) -> None:
        TALLY.fuzzed("row keys")
        ka, kb = rowkeys.hour_bucket_key(user_id, a * 3600), rowkeys.hour_bucket_key(user_id, b * 3600)
        assert (ka < kb) == (a < b) and (ka == kb) == (a == b)
        low, high = rowkeys.hour_bucket_range(user_id, min(a, b) * 3600, max(a, b) * 3600 + 3600)
        assert low <= ka < high and low <= kb < high

    check()


def test_the_directory_range_of_a_prefix_holds_exactly_the_users_that_start_with_it(scale: Scale) -> None:
    @examples(scale)
    @given(st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=8), user_ids)
    def check(prefix: str, user_id: str) -> None:
        TALLY.fuzzed("row keys")
        low, high = rowkeys.user_directory_range(prefix)
        assert (low <= rowkeys.user_directory_key(user_id) < high) == user_id.startswith(prefix)

    check()


def test_no_key_of_one_user_lies_in_a_range_of_another(scale: Scale) -> None:
    micros = st.integers(min_value=0, max_value=10**16 - 1)

    @examples(scale)
    @given(user_ids, user_ids, micros, micros, micros, transaction_ids)
    def check(user_a: str, user_b: str, low: int, high: int, event_us: int, tx: str) -> None:
        TALLY.fuzzed("row keys")
        key = rowkeys.transaction_key(user_b, event_us, tx)
        hour_key = rowkeys.hour_bucket_key(user_b, event_us // 3_600_000_000 * 3600)
        start, end = rowkeys.transaction_range(user_a, low, high)
        hour_start, hour_end = rowkeys.hour_bucket_range(user_a, low // 1_000_000, high // 1_000_000)
        if user_a != user_b:
            assert not start <= key < end
            assert not hour_start <= hour_key < hour_end
            assert not start <= hour_key < end  # neither shape leaks into the other's scans

    check()


def test_arbitrary_bytes_are_not_parsed_as_user_row_keys(scale: Scale) -> None:
    @examples(scale)
    @given(st.binary(max_size=200))
    def check(key: bytes) -> None:
        TALLY.tried_malformed("arbitrary row keys (hypothesis)")
        for parse in (rowkeys.parse_transaction_key, rowkeys.parse_hour_bucket_key):
            try:
                parsed = parse(key)
            except rowkeys.RowKeyError:
                continue
            assert parsed[0].encode() == key.split(b"#", 1)[0]

    check()
