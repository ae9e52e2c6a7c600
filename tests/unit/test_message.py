"""Message parsing and validation: the wire form round-trips, and every reject reason is reached
with a detail that names the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from common.message import MessageError, Transaction, parse_message

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


def body(**changes: object) -> bytes:
    """GOOD with some fields changed; a value of `...` removes the field."""
    data = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    return json.dumps(data).encode()


def parse(data: bytes, **kwargs: object) -> Transaction:
    return parse_message(data, NOW, **kwargs)  # type: ignore[arg-type]


def test_good_message_parses_to_exact_fields() -> None:
    txn = parse(body())
    assert txn == Transaction(
        transaction_id="3005e9d2-9973-40b6-b8eb-1e86016902b5",
        user_id="u0001",
        amount_minor=4217,
        currency="USD",
        event_time=datetime(2026, 11, 21, 8, 0, 0, 123456, tzinfo=UTC),
        merchant_category="grocery",
    )


def test_encode_round_trips_and_attributes_carry_event_time_and_version() -> None:
    txn = Transaction("t-1", "u.x_9-Z", -1250, "EUR", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "fuel")
    assert parse(txn.encode()) == txn
    assert json.loads(txn.encode())["amount"] == "-12.50"
    assert json.loads(txn.encode())["event_time"] == "2026-01-02T03:04:05Z"
    assert txn.attributes() == {"event_time": "2026-01-02T03:04:05Z", "schema_version": "1"}


def test_optional_fields_take_their_defaults() -> None:
    txn = parse(body(currency=..., merchant_category=..., schema_version=...))
    assert (txn.currency, txn.merchant_category) == ("USD", "unknown")


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        ("-12.50", -1250),  # a refund is valid
        ("12.3", 1230),
        ("12.340", 1234),  # trailing zero, still whole cents
        ("0.01", 1),
        ("1000000.00", 100_000_000),  # the default limit itself is allowed
        ("7", 700),
        (42, 4200),  # an exact JSON integer
        (42.17, 4217),  # a JSON number is read as a decimal, not a float
    ],
)
def test_amounts_become_exact_cents(amount: object, cents: int) -> None:
    assert parse(body(amount=amount)).amount_minor == cents


def test_event_time_with_an_offset_is_converted_to_utc() -> None:
    txn = parse(body(event_time="2026-11-21T10:30:00+02:00"))
    assert txn.event_time == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)


def test_schema_version_as_string_is_accepted() -> None:
    assert parse(body(schema_version="1")).user_id == "u0001"


def test_user_id_of_64_characters_is_accepted() -> None:
    assert parse(body(user_id="a" * 64)).user_id == "a" * 64


@pytest.mark.parametrize(
    ("data", "reason", "named"),
    [
        (b"{not json", "bad_json", "JSON"),
        (b"[1, 2, 3]", "bad_json", "object"),
        (b'"a string"', "bad_json", "object"),
        (b"42", "bad_json", "object"),
        (b"", "empty", "empty"),
        (b"  \n ", "empty", "empty"),
        (b"\xff\xfe{}", "bad_encoding", "UTF-8"),
        (body(schema_version=2), "bad_schema_version", "'schema_version'"),
        (body(schema_version=True), "bad_schema_version", "'schema_version'"),
        (body(transaction_id=...), "missing_field", "'transaction_id'"),
        (body(user_id=...), "missing_field", "'user_id'"),
        (body(amount=...), "missing_field", "'amount'"),
        (body(event_time=...), "missing_field", "'event_time'"),
        (body(user_id=None), "missing_field", "'user_id'"),
        (body(amount=None), "missing_field", "'amount'"),
        (body(transaction_id=123), "bad_type", "'transaction_id'"),
        (body(amount=True), "bad_type", "'amount'"),
        (body(amount=[1]), "bad_type", "'amount'"),
        (body(amount={"v": 1}), "bad_type", "'amount'"),
        (body(event_time=1700000000), "bad_type", "'event_time'"),
        (body(transaction_id="has space"), "bad_transaction_id", "'transaction_id'"),
        (body(transaction_id="x" * 129), "bad_transaction_id", "'transaction_id'"),
        (body(user_id="u#1"), "bad_user_id", "'user_id'"),  # '#' is the row-key separator
        (body(user_id=""), "bad_user_id", "'user_id'"),
        (body(user_id="has space"), "bad_user_id", "'user_id'"),
        (body(user_id="a" * 65), "bad_user_id", "'user_id'"),
        (body(user_id="üser"), "bad_user_id", "'user_id'"),
        (body(user_id=12), "bad_user_id", "'user_id'"),
        (body(amount="abc"), "bad_amount", "'amount'"),
        (body(amount=""), "bad_amount", "'amount'"),
        (body(amount="1,5"), "bad_amount", "'amount'"),
        (body(amount="12.34.5"), "bad_amount", "'amount'"),
        (body(amount="NaN"), "non_finite_amount", "'amount'"),
        (body(amount="Infinity"), "non_finite_amount", "'amount'"),
        (body(amount="-inf"), "non_finite_amount", "'amount'"),
        (
            b'{"transaction_id":"t1","user_id":"u1","amount":NaN,"event_time":"2026-11-21T08:00:00Z"}',
            "non_finite_amount",
            "'amount'",
        ),
        (
            b'{"transaction_id":"t1","user_id":"u1","amount":-Infinity,"event_time":"2026-11-21T08:00:00Z"}',
            "non_finite_amount",
            "'amount'",
        ),
        (body(amount="1000000.01"), "absurd_amount", "'amount'"),
        (body(amount="-1000000.01"), "absurd_amount", "'amount'"),
        (body(amount="1e400"), "bad_amount", "'amount'"),  # no exponents: a plain decimal only
        (body(amount=" 12.50"), "bad_amount", "'amount'"),
        (body(amount=".5"), "bad_amount", "'amount'"),
        (body(amount="12.345"), "too_many_decimals", "'amount'"),
        (body(amount="0.001"), "too_many_decimals", "'amount'"),
        (body(amount=12.345), "too_many_decimals", "'amount'"),
        (body(amount="10.5", currency="JPY"), "too_many_decimals", "'amount'"),
        (body(amount="1.2345", currency="BHD"), "too_many_decimals", "'amount'"),
        (body(currency="XYZ"), "unknown_currency", "'currency'"),
        (body(currency="AAA"), "unknown_currency", "'currency'"),
        (body(note="hello"), "unknown_field", "'note'"),
        (body().replace(b'"user_id": "u0001"', b'"user_id": "u1", "user_id": "u2"'), "duplicate_key", "'user_id'"),
        (body(event_time="yesterday"), "bad_event_time", "'event_time'"),
        (body(event_time="2026-11-21T08:00:00"), "bad_event_time", "'event_time'"),  # naive: no offset
        (body(event_time="2026-13-01T00:00:00Z"), "bad_event_time", "'event_time'"),
        (body(event_time="1999-12-31T23:59:59Z"), "absurd_event_time", "'event_time'"),
        (body(event_time="2026-11-22T12:00:01Z"), "absurd_event_time", "'event_time'"),  # > 1 day ahead
        (body(currency="usd"), "bad_currency", "'currency'"),
        (body(currency="EURO"), "bad_currency", "'currency'"),
        (body(currency=840), "bad_currency", "'currency'"),
        (body(merchant_category=""), "bad_merchant_category", "'merchant_category'"),
        (body(merchant_category="x" * 65), "bad_merchant_category", "'merchant_category'"),
        (body(merchant_category="café"), "bad_merchant_category", "'merchant_category'"),
    ],
)
def test_each_bad_message_is_rejected_with_its_reason(data: bytes, reason: str, named: str) -> None:
    with pytest.raises(MessageError) as info:
        parse(data)
    assert info.value.reason == reason
    assert named in info.value.detail
    assert "\n" not in str(info.value)


def test_event_time_up_to_a_day_ahead_is_accepted() -> None:
    ahead = NOW + timedelta(hours=23)
    assert parse(body(event_time=ahead.isoformat())).event_time == ahead


def test_payload_over_the_limit_is_oversize_and_at_the_limit_is_fine() -> None:
    data = body()
    assert parse(data, max_bytes=len(data)).user_id == "u0001"
    with pytest.raises(MessageError) as info:
        parse(data, max_bytes=len(data) - 1)
    assert info.value.reason == "oversize"
    assert str(len(data)) in info.value.detail


def test_absurd_amount_limit_is_configurable() -> None:
    assert parse(body(amount="500.00"), max_abs_amount="500").amount_minor == 50_000
    with pytest.raises(MessageError) as info:
        parse(body(amount="500.01"), max_abs_amount="500")
    assert info.value.reason == "absurd_amount"


@pytest.mark.parametrize(
    ("currency", "largest", "largest_minor", "over"),
    [("USD", "500.00", 50_000, "500.01"), ("JPY", "500", 500, "501"), ("BHD", "500.000", 500_000, "500.001")],
)
def test_the_amount_bound_is_in_major_units_in_every_currency(
    currency: str, largest: str, largest_minor: int, over: str
) -> None:
    assert parse(body(amount=largest, currency=currency), max_abs_amount="500").amount_minor == largest_minor
    assert parse(body(amount="-" + largest, currency=currency), max_abs_amount="500").amount_minor == -largest_minor
    with pytest.raises(MessageError) as info:
        parse(body(amount=over, currency=currency), max_abs_amount="500")
    assert info.value.reason == "absurd_amount"
    assert "'amount'" in info.value.detail


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("1000", "JPY", 1000),  # no minor unit
        ("1000.0", "JPY", 1000),  # a zero fraction is still whole yen
        (1000, "JPY", 1000),
        ("10.00", "USD", 1000),
        ("1.234", "BHD", 1234),  # three places
        ("-0.005", "KWD", -5),
        ("12.5", "EUR", 1250),
        ("7", "CLF", 70_000),  # four places (CLDR)
    ],
)
def test_amounts_become_exact_minor_units_of_their_currency(amount: object, currency: str, minor: int) -> None:
    txn = parse(body(amount=amount, currency=currency))
    assert (txn.amount_minor, txn.currency) == (minor, currency)


@pytest.mark.parametrize(
    ("minor", "currency", "wire"),
    [(123456, "JPY", "123456"), (-1250, "EUR", "-12.50"), (1234, "BHD", "1.234"), (5, "USD", "0.05")],
)
def test_encode_writes_the_currency_places_and_round_trips(minor: int, currency: str, wire: str) -> None:
    txn = Transaction("t-1", "u1", minor, currency, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "fuel")
    assert json.loads(txn.encode())["amount"] == wire
    assert parse(txn.encode()) == txn


def test_a_repeated_key_is_refused_whichever_copy_is_bad() -> None:
    good_twice = body().replace(b'"amount": "42.17"', b'"amount": "42.17", "amount": "42.17"')
    escaped = body().replace(b'"amount": "42.17"', b'"amount": "42.17", "amoun\\u0074": "1.00"')
    assert b"\\u0074" in escaped
    for data in (good_twice, escaped):
        with pytest.raises(MessageError) as info:
            parse(data)
        assert (info.value.reason, info.value.detail) == ("duplicate_key", "'amount' appears more than once")


def test_a_value_that_looks_like_a_key_is_not_a_repeated_key() -> None:
    # ':' may start a transaction id; '"user_id"' may be one.
    assert parse(body(transaction_id=":x")).transaction_id == ":x"
    assert parse(body(transaction_id="user_id")).transaction_id == "user_id"


def test_escaped_characters_in_values_are_read() -> None:
    data = body().replace(b'"u0001"', b'"u\\u0030001"')
    assert parse(data).user_id == "u0001"


# The one-line CSV form of the Redis-based sibling system: user_id,amount,epoch_seconds.


def test_csv_line_parses_with_a_stable_content_derived_id() -> None:
    txn = parse(b"u0042,42.17,1700000000")
    assert (txn.user_id, txn.amount_minor, txn.currency, txn.merchant_category) == ("u0042", 4217, "USD", "unknown")
    assert txn.event_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert txn.transaction_id.startswith("csv-")
    assert parse(b"u0042,42.17,1700000000\n").transaction_id == txn.transaction_id  # a redelivery
    assert parse(b"u0042,42.18,1700000000").transaction_id != txn.transaction_id


def test_csv_line_with_fractional_seconds_and_a_refund() -> None:
    txn = parse(b"u1, -5.00 ,1700000000.25")
    assert txn.amount_minor == -500
    assert txn.event_time == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"u#1,42.17,1700000000", "bad_user_id"),
        (b"u1,abc,1700000000", "bad_amount"),
        (b"u1,42.175,1700000000", "too_many_decimals"),
        (b"u1,42.17,1700000000.1234567", "bad_event_time"),  # finer than a microsecond
        (b"u1,42.17,1e9", "bad_event_time"),  # no exponent, whatever its size
        (b"u1,1.00,1e999990", "bad_event_time"),
        (b"u1,nan,1700000000", "non_finite_amount"),
        (b"u1,42.17,soon", "bad_event_time"),
        (b"u1,42.17,946684799", "absurd_event_time"),  # 1999
        (b"u1,42.17", "bad_json"),  # neither JSON nor three fields
        (b"u1,42.17,1700000000,extra", "bad_json"),
    ],
)
def test_bad_csv_lines_are_rejected_with_their_reason(line: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        parse(line)
    assert info.value.reason == reason
