"""The hostile corpus (bench/hostile.py): every pathological body is refused by parse_message with the
reason written beside it, a one-line detail, and no other exception. The benchmark's `hostile` stage
times the same inputs; here only what each one is refused for is checked."""

from __future__ import annotations

import pytest
from support.tally import TALLY

from bench.hostile import CORPUS, GOOD, NOW, TYPICAL, TYPICAL_CSV
from common.message import MessageError, Transaction, parse_message

# Every reject reason of the product; a corpus entry naming anything else is a typo.
REASONS = {
    "oversize",
    "empty",
    "bad_encoding",
    "bad_json",
    "unknown_field",
    "duplicate_key",
    "missing_field",
    "bad_type",
    "bad_schema_version",
    "bad_transaction_id",
    "bad_user_id",
    "bad_amount",
    "non_finite_amount",
    "too_many_decimals",
    "absurd_amount",
    "bad_currency",
    "unknown_currency",
    "bad_event_time",
    "absurd_event_time",
    "bad_merchant_category",
}


def test_the_corpus_has_at_least_fifty_distinct_inputs_of_every_kind_the_issue_names() -> None:
    names = [name for name, _, _ in CORPUS]
    assert len(set(names)) == len(names) >= 50
    assert len({payload for _, payload, _ in CORPUS}) == len(CORPUS)
    assert {reason for _, _, reason in CORPUS} <= REASONS
    text = " ".join(names).lower()
    for kind in ("exponent", "8 kb of digits", "nested", "digits", "nul", "20 digits", "twice", "utf-16"):
        assert kind in text, kind
    for kind in ("byte order mark", "surrogate", "unknown currency"):
        assert kind in text, kind


@pytest.mark.parametrize(("name", "payload", "reason"), CORPUS, ids=[name for name, _, _ in CORPUS])
def test_each_hostile_input_is_refused_with_its_reason(name: str, payload: bytes, reason: str) -> None:
    TALLY.tried_malformed("hostile corpus (parse_message)")
    with pytest.raises(MessageError) as refused:
        parse_message(payload, NOW)
    assert (refused.value.reason, name) == (reason, name)
    detail = refused.value.detail
    assert detail and "\n" not in detail and len(detail) <= 200


def test_the_typical_messages_the_benchmark_compares_with_are_valid() -> None:
    txn = parse_message(TYPICAL, NOW)
    assert txn == Transaction(
        GOOD["transaction_id"], "u0001", 4217, "USD", NOW.replace(hour=8, microsecond=123456), "grocery"
    )
    assert parse_message(TYPICAL_CSV, NOW).amount_minor == 4217
