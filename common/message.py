"""The transaction message: one schema, one parser, one set of reject reasons.

Wire form (JSON, UTF-8):
    {"schema_version": 1, "transaction_id": "...", "user_id": "u0001", "amount": "42.17",
     "currency": "USD", "event_time": "2026-11-21T08:00:00.123456Z", "merchant_category": "grocery"}
Attributes: event_time (RFC 3339) and schema_version.
The legacy one-line CSV form "user_id,amount,epoch_seconds" is accepted too; its transaction_id is
derived from the line's content, so a redelivered line is still counted once.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from common.money import format_minor
from common.timeutil import TimeFormatError, format_rfc3339, parse_rfc3339

SCHEMA_VERSION = 1
USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
TRANSACTION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CURRENCY = re.compile(r"[A-Z]{3}")
CATEGORY = re.compile(r"[A-Za-z0-9_ .&/-]{1,64}")
_CSV = re.compile(r"^\s*([^,\s]*)\s*,\s*([^,\s]*)\s*,\s*([^,\s]*)\s*$")
_CSV_NAMESPACE = uuid.UUID("6f1c9a52-3a8e-4d0b-9a57-2d0c5e1f7b11")
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
DEFAULT_MAX_ABS_CENTS = 100_000_000  # 1,000,000.00
DEFAULT_MAX_BYTES = 8192
# The common "123.45" form, read without Decimal (the spooler parses every message).
_PLAIN_AMOUNT = re.compile(r"(-?)([0-9]{1,16})\.([0-9][0-9])")
# Built once: json.loads with keyword arguments builds a new decoder on every call. JSON numbers
# become Decimal (never float); NaN/Infinity literals stay text so they are refused by name.
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=lambda constant: constant)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # likewise for json.dumps


class MessageError(ValueError):
    """A message that cannot be spooled. `reason` is a short code, `detail` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    user_id: str
    amount_minor: int
    currency: str
    event_time: datetime
    merchant_category: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "transaction_id": self.transaction_id,
            "user_id": self.user_id,
            "amount": format_minor(self.amount_minor, self.currency),
            "currency": self.currency,
            "event_time": format_rfc3339(self.event_time),
            "merchant_category": self.merchant_category,
        }

    def encode(self) -> bytes:
        """The message body as compact UTF-8 JSON."""
        return _COMPACT_JSON.encode(self.to_json_dict()).encode()

    def attributes(self) -> dict[str, str]:
        return {"event_time": format_rfc3339(self.event_time), "schema_version": str(SCHEMA_VERSION)}


def _need_str(obj: dict[str, Any], key: str) -> str:
    if key not in obj or obj[key] is None:
        raise MessageError("missing_field", f"'{key}' is required")
    value = obj[key]
    if not isinstance(value, str):
        raise MessageError("bad_type", f"'{key}' must be a string, got {type(value).__name__}")
    return value


def check_user_id(value: Any) -> str:
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise MessageError("bad_user_id", f"'user_id' must match [A-Za-z0-9_.-]{{1,64}}, got {str(value)[:80]!r}")
    return value


def parse_amount(value: Any, max_abs_cents: int = DEFAULT_MAX_ABS_CENTS) -> int:
    """A decimal string (or exact JSON number) with at most two places -> integer cents."""
    if isinstance(value, str) and (plain := _PLAIN_AMOUNT.fullmatch(value)):
        sign, whole, cents = plain.groups()
        amount_minor = int(whole) * 100 + int(cents)
        if amount_minor > max_abs_cents:
            raise MessageError("absurd_amount", f"'amount' {value[:40]} exceeds {format_minor(max_abs_cents, 'USD')} in size")
        return -amount_minor if sign else amount_minor
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise MessageError("bad_type", f"'amount' must be a decimal string, got {type(value).__name__}")
    text = str(value).strip()
    # re.ASCII: Decimal and \d also take other scripts' digits ("١٢.٥٠"), which the wire form does not.
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", text, re.I | re.A):
        raise MessageError("bad_amount", f"'amount' is not a decimal number: {text[:40]!r}")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise MessageError("bad_amount", f"'amount' is not a decimal number: {text[:40]!r}") from None
    if not amount.is_finite():
        raise MessageError("non_finite_amount", f"'amount' must be finite, got {text[:40]!r}")
    if abs(amount) > Decimal(max_abs_cents).scaleb(-2):
        raise MessageError("absurd_amount", f"'amount' {text[:40]} exceeds {format_minor(max_abs_cents, 'USD')} in size")
    if amount != amount.quantize(Decimal("0.01")):
        raise MessageError("sub_cent_amount", f"'amount' has more than two decimal places: {text[:40]!r}")
    return int(amount.scaleb(2))


def check_event_time(event_time: datetime, now: datetime) -> datetime:
    if event_time < EARLIEST_EVENT:
        raise MessageError("absurd_event_time", f"'event_time' {format_rfc3339(event_time)} is before 2000-01-01")
    if event_time > now + MAX_FUTURE:
        raise MessageError("absurd_event_time", f"'event_time' {format_rfc3339(event_time)} is more than a day ahead")
    return event_time


def _parse_csv(text: str, now: datetime, max_abs_cents: int) -> Transaction:
    match = _CSV.match(text)
    if not match:
        raise MessageError("bad_json", "body is neither a JSON object nor a 'user_id,amount,epoch_seconds' line")
    user_id, amount, epoch = match.groups()
    check_user_id(user_id)
    cents = parse_amount(amount, max_abs_cents)
    try:
        seconds = Decimal(epoch)
        if not seconds.is_finite() or not epoch.isascii():
            raise InvalidOperation
        micros = int((seconds * 1_000_000).to_integral_value())
        event_time = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except (InvalidOperation, OverflowError, ValueError):
        raise MessageError("bad_event_time", f"'epoch_seconds' is not a number: {epoch[:40]!r}") from None
    check_event_time(event_time, now)
    transaction_id = "csv-" + str(uuid.uuid5(_CSV_NAMESPACE, text.strip()))
    return Transaction(transaction_id, user_id, cents, "USD", event_time, "unknown")


def parse_message(
    data: bytes,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_abs_cents: int = DEFAULT_MAX_ABS_CENTS,
) -> Transaction:
    """Validate a message body and return the Transaction, or raise MessageError with the reason."""
    now = now or datetime.now(UTC)
    if len(data) > max_bytes:
        raise MessageError("oversize", f"payload is {len(data)} bytes, limit {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("bad_encoding", "payload is not UTF-8") from None
    if not text.strip():
        raise MessageError("empty", "payload is empty")
    if not text.lstrip().startswith(("{", "[", '"')) and "," in text:
        return _parse_csv(text, now, max_abs_cents)
    try:
        obj = _JSON.decode(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MessageError("bad_json", f"not valid JSON: {getattr(exc, 'msg', 'too deeply nested')}") from None
    except ValueError:  # an integer longer than int() reads (sys.get_int_max_str_digits(), 4300 digits)
        raise MessageError("bad_json", "not valid JSON: a number with too many digits") from None
    if not isinstance(obj, dict):
        raise MessageError("bad_json", f"JSON body must be an object, got {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or version not in (SCHEMA_VERSION, str(SCHEMA_VERSION)):
        raise MessageError("bad_schema_version", f"'schema_version' must be {SCHEMA_VERSION}, got {version!r}")
    transaction_id = _need_str(obj, "transaction_id")
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise MessageError(
            "bad_transaction_id", f"'transaction_id' must match [A-Za-z0-9_.:-]{{1,128}}, got {transaction_id[:80]!r}"
        )
    if "user_id" not in obj or obj["user_id"] is None:
        raise MessageError("missing_field", "'user_id' is required")
    user_id = check_user_id(obj["user_id"])
    if "amount" not in obj or obj["amount"] is None:
        raise MessageError("missing_field", "'amount' is required")
    amount = obj["amount"]
    if isinstance(amount, str) and amount.strip().lower() in ("nan", "infinity", "-infinity", "inf", "-inf"):
        raise MessageError("non_finite_amount", f"'amount' must be finite, got {amount!r}")
    cents = parse_amount(amount, max_abs_cents)
    raw_time = _need_str(obj, "event_time")
    try:
        event_time = parse_rfc3339(raw_time)
    except TimeFormatError as exc:
        raise MessageError("bad_event_time", f"'event_time' {exc}") from None
    check_event_time(event_time, now)
    currency = obj.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise MessageError("bad_currency", f"'currency' must be a 3-letter code, got {str(currency)[:20]!r}")
    category = obj.get("merchant_category", "unknown")
    if not isinstance(category, str) or not CATEGORY.fullmatch(category):
        raise MessageError(
            "bad_merchant_category", f"'merchant_category' must be 1-64 plain characters, got {str(category)[:40]!r}"
        )
    return Transaction(transaction_id, user_id, cents, currency, event_time, category)
