"""Hostile message bodies, and what parsing each one costs beside a typical valid message.

CORPUS is the set of pathological inputs every parser of the message must refuse cheaply: exponent
and digit bombs, 8 KB of digits, deep nesting, other scripts' digits, NUL bytes, huge integers,
repeated keys, UTF-16/32, byte order marks, surrogates, ... each with the reason it is refused for
(written by hand). tests/unit/test_hostile_corpus.py checks every reason; the benchmark's `hostile` stage
times every input and compares the worst with a typical message (target: at most 10 x).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from bench.results import Result, compare
from common.message import MessageError, parse_message

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
GOOD: dict[str, Any] = {
    "schema_version": 1,
    "transaction_id": "3005e9d2-9973-40b6-b8eb-1e86016902b5",
    "user_id": "u0001",
    "amount": "42.17",
    "currency": "USD",
    "event_time": "2026-11-21T08:00:00.123456Z",
    "merchant_category": "grocery",
}
TYPICAL = json.dumps(GOOD, separators=(",", ":")).encode()
TYPICAL_CSV = b"u0001,42.17,1763712000"
LIMIT = 8192  # the default max_payload_bytes


def body(**changes: Any) -> bytes:
    """GOOD as compact JSON with fields changed."""
    return json.dumps({**GOOD, **changes}, separators=(",", ":")).encode()


def with_amount(raw: str) -> bytes:
    """GOOD with the amount's JSON text replaced by `raw` (for what json.dumps cannot write)."""
    return TYPICAL.replace(b'"amount":"42.17"', b'"amount":' + raw.encode())


def fill(prefix: bytes, unit: bytes, suffix: bytes, size: int = LIMIT) -> bytes:
    """prefix + unit repeated + suffix, as long as fits in `size` bytes."""
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


def nested(depth: int, opening: bytes = b"[", closing: bytes = b"]", core: bytes = b"") -> bytes:
    return opening * depth + core + closing * depth


# (name, payload, reason). Every payload is refused; the reasons are the product's reject reasons.
CORPUS: list[tuple[str, bytes, str]] = [
    # exponent and digit bombs
    ("CSV epoch exponent bomb 1e999990 (25 s of Decimal before)", b"u1,1.00,1e999990", "bad_event_time"),
    ("CSV epoch 1e999999 (decimal.Overflow)", b"u1,1.00,1e999999", "bad_event_time"),
    ("CSV epoch -1e-999999", b"u1,1.00,-1e-999999", "bad_event_time"),
    ("CSV amount 1e999999", b"u1,1e999999,1763712000", "bad_amount"),
    ("CSV epoch of 8 KB of digits", fill(b"u1,1.00,", b"9", b""), "bad_event_time"),
    ("CSV epoch of 13 digits", b"u1,1.00,1763712000000", "bad_event_time"),
    ("CSV epoch beyond year 9999", b"u1,1.00,999999999999", "absurd_event_time"),
    ("CSV epoch before year 1", b"u1,1.00,-999999999999", "absurd_event_time"),
    ("amount exponent bomb as text 1e999999999", body(amount="1e999999999"), "bad_amount"),
    ("amount number 1e999999999", with_amount("1e999999999"), "bad_amount"),
    ("amount number -1E-999999999", with_amount("-1E-999999999"), "bad_amount"),
    ("amount number 4.217e1", with_amount("4.217e1"), "bad_amount"),
    ("amount text of 8 KB of digits", with_amount('"' + "9" * 7980 + '"'), "bad_amount"),
    ("amount number of 8 KB of digits", with_amount("9" * 7980), "bad_json"),
    ("amount 0. and 8 KB of zeros", with_amount('"0.' + "0" * 7900 + '"'), "bad_amount"),
    ("amount of 41 decimal places", body(amount="1." + "0" * 41), "bad_amount"),
    ("schema_version of 8 KB of digits", fill(b'{"schema_version":', b"9", b"}"), "bad_json"),
    ("schema_version 1e999", TYPICAL.replace(b'"schema_version":1', b'"schema_version":1e999'), "bad_schema_version"),
    # huge integers
    ("amount number of 20 digits", with_amount("99999999999999999999"), "absurd_amount"),
    ("amount text of 30 digits", body(amount="9" * 30), "absurd_amount"),
    ("amount number of 4301 digits", with_amount("9" * 4301), "bad_json"),
    ("amount -(2^63)", with_amount(str(-(2**63))), "absurd_amount"),
    # deep nesting
    ("array nested 4096 deep", nested(4096), "bad_json"),
    ("object nested 1300 deep", nested(1300, b'{"a":', b"}", b"1"), "unknown_field"),
    ("array of objects nested 1300 deep", nested(1300, b'[{"a":', b"}]", b"1")[:LIMIT], "bad_json"),
    ("amount nested 3990 deep", with_amount(nested(3990).decode()), "bad_json"),
    ("amount nested 100 deep", with_amount(nested(100).decode()), "bad_type"),
    ("unknown field nested 3990 deep", TYPICAL[:-1] + b',"x":' + nested(3990) + b"}", "unknown_field"),
    ("currency as nested objects", TYPICAL.replace(b'"USD"', nested(200, b'{"a":', b"}", b"1")), "bad_currency"),
    # other scripts' digits
    ("amount in Arabic-Indic digits", body(amount="١٢.٥٠"), "bad_amount"),
    ("amount in full-width digits", body(amount="１２.５０"), "bad_amount"),
    ("amount in superscript digits", body(amount="¹²"), "bad_amount"),
    ("CSV epoch in Devanagari digits", "u1,12.50,१७६३७१२०००".encode(), "bad_event_time"),
    ("event time in full-width digits", body(event_time="２０２６-11-21T08:00:00Z"), "bad_event_time"),
    # NUL bytes and control characters
    ("only NUL bytes", b"\x00" * 64, "bad_json"),
    ("a raw NUL inside a string", TYPICAL.replace(b'"u0001"', b'"u\x00001"'), "bad_json"),
    ("an escaped NUL in the user id", TYPICAL.replace(b'"u0001"', b'"u\\u0000"'), "bad_user_id"),
    ("CSV with a NUL in the user id", b"u\x001,1.00,1763712000", "bad_user_id"),
    # repeated and unknown keys
    ("amount twice, both valid", with_amount('"42.17","amount":"42.17"'), "duplicate_key"),
    ("amount twice, the last one bad", with_amount('"1.00","amount":"1.001"'), "duplicate_key"),
    ("user id twice, once escaped", TYPICAL.replace(b'"user_id"', b'"user_id":"u2","user\\u005fid"'), "duplicate_key"),
    ("the currency key 8 KB of times", fill(TYPICAL[:-1], b',"currency":"USD"', b"}"), "duplicate_key"),
    ("an unknown field", body(note="x"), "unknown_field"),
    ("2,000 unknown fields", fill(b"{", b'"a":1,', b'"b":1}'), "unknown_field"),
    ("an unknown key of 4 KB", TYPICAL[:-1] + b',"' + b"k" * 4096 + b'":1}', "unknown_field"),
    # encodings, byte order marks, surrogates
    ("UTF-16 with a byte order mark", TYPICAL.decode().encode("utf-16"), "bad_encoding"),
    ("UTF-16 big-endian, no mark", TYPICAL.decode().encode("utf-16-be"), "bad_json"),
    ("UTF-32 with a byte order mark", TYPICAL.decode().encode("utf-32"), "bad_encoding"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + TYPICAL, "bad_json"),
    ("a byte order mark inside the user id", body(user_id="\ufeffu1"), "bad_user_id"),
    ("lone high surrogate escape", TYPICAL.replace(b'"u0001"', b'"\\ud800"'), "bad_json"),
    ("lone low surrogate escape", TYPICAL.replace(b'"u0001"', b'"\\udc00x"'), "bad_json"),
    ("escaped surrogate pair (an emoji)", TYPICAL.replace(b'"u0001"', b'"\\ud83d\\ude00"'), "bad_user_id"),
    ("surrogate encoded in UTF-8 bytes", TYPICAL.replace(b'"u0001"', b'"\xed\xa0\x80"'), "bad_encoding"),
    ("overlong UTF-8 for '{'", b"\xc0\xbb" + TYPICAL[1:], "bad_encoding"),
    ("truncated UTF-8 sequence", TYPICAL.replace(b'"u0001"', b'"u\xe2\x82"'), "bad_encoding"),
    # non-finite numbers
    ("amount NaN literal", with_amount("NaN"), "non_finite_amount"),
    ("amount -Infinity literal", with_amount("-Infinity"), "non_finite_amount"),
    ("amount Infinity text", body(amount="Infinity"), "non_finite_amount"),
    ("CSV amount nan", b"u1,nan,1763712000", "non_finite_amount"),
    # size
    ("one byte over the limit", fill(b'{"a":"', b"x", b'"}', LIMIT + 1), "oversize"),
    ("a megabyte", fill(b'{"a":"', b"x", b'"}', 1 << 20), "oversize"),
    ("only whitespace, 8 KB", b" \t\r\n" * (LIMIT // 4), "empty"),
    ("8 KB of commas", b"," * LIMIT, "bad_json"),
    ("8 KB of ', '", b", " * (LIMIT // 2), "bad_json"),
    ("CSV with a user id of 8 KB", fill(b"", b"u", b",1.00,1763712000"), "bad_user_id"),
    ("a string of 8 KB, not an object", fill(b'"', b"x", b'"'), "bad_json"),
    ("an array of 2,000 strings", fill(b"[", b'"a",', b'"a"]'), "bad_json"),
    # long or malformed text fields
    ("transaction id of 8 KB", fill(b'{"transaction_id":"', b"t", b'"}'), "bad_transaction_id"),
    ("an unknown field of 8 KB", fill(TYPICAL[:-1] + b',"x":"', b"2", b'"}'), "unknown_field"),
    ("event time of 8 KB of digits", TYPICAL.replace(GOOD["event_time"].encode(), b"2" * 7900), "bad_event_time"),
    ("event time with 9 decimals", body(event_time="2026-11-21T08:00:00.123456789Z"), "bad_event_time"),
    ("event time offset +99:99", body(event_time="2026-11-21T08:00:00+99:99"), "bad_event_time"),
    ("event time year 0", body(event_time="0000-01-01T00:00:00Z"), "bad_event_time"),
    ("category of 8 KB of escapes", TYPICAL.replace(b"grocery", b"\\u0041" * 1330), "bad_merchant_category"),
    # currencies
    ("unknown currency", body(currency="ZZZ"), "unknown_currency"),
    ("yen with decimals", body(amount="10.5", currency="JPY"), "too_many_decimals"),
    ("dinar with four decimals", body(amount="1.2345", currency="BHD"), "too_many_decimals"),
]


def parse_cost_us(payload: bytes, budget_s: float = 0.02) -> float:
    """CPU microseconds parse_message takes on `payload` (refusal included): the best of five timed
    loops of about `budget_s` each. Thread CPU time, so other processes on the machine count less."""

    def loop(count: int) -> float:
        started = time.thread_time()
        for _ in range(count):
            with contextlib.suppress(MessageError):
                parse_message(payload, NOW)
        return (time.thread_time() - started) / count

    first = loop(1)
    count = max(1, min(20_000, int(budget_s / max(first, 1e-6))))
    return min(loop(count) for _ in range(5)) * 1e6


def corpus_costs(rounds: int = 3) -> tuple[float, list[tuple[str, float]]]:
    """The typical message's cost and every corpus input's (microseconds, worst first): the best of
    `rounds` interleaved passes, so a burst of load on the machine hits the typical one alike."""
    typical = math.inf
    best = {name: math.inf for name, _, _ in CORPUS}
    for _ in range(rounds):
        typical = min(typical, parse_cost_us(TYPICAL))
        for name, payload, _ in CORPUS:
            best[name] = min(best[name], parse_cost_us(payload))
    return typical, sorted(best.items(), key=lambda item: -item[1])


def stage(bench: Any) -> list[Result]:
    """Parsing cost of the worst of the hostile corpus beside a typical valid message (in process)."""
    say = bench.say
    typical, costs = corpus_costs()
    csv_line = parse_cost_us(TYPICAL_CSV)
    say(f"    typical message {typical:.2f} us, CSV line {csv_line:.2f} us; {len(CORPUS)} hostile inputs, worst:")
    for name, cost in costs[:5]:
        say(f"      {name}: {cost:.2f} us ({cost / typical:.1f} x)")
    worst_name, worst = costs[0]
    return [
        compare("parse a typical message (ceiling)", typical, "us", None, "-", None, f"{len(TYPICAL)} bytes of JSON"),
        compare(
            "parse the worst hostile input",
            worst,
            "us",
            typical,
            "<= 10 x a typical message",
            worst <= 10 * typical,
            f"{worst_name!r}, the worst of {len(CORPUS)} inputs each refused with its reason",
        ),
    ]
