"""The transaction message: one schema, one parser, one set of reject reasons.

Wire form (JSON, UTF-8):
    {"schema_version": 1, "transaction_id": "...", "user_id": "u0001", "amount": "42.17",
     "currency": "USD", "event_time": "2026-11-21T08:00:00.123456Z", "merchant_category": "grocery"}
Attributes: event_time (RFC 3339) and schema_version.
The legacy one-line CSV form "user_id,amount,epoch_seconds" is accepted too (always USD); its
transaction_id is derived from the line's content, so a redelivered line is still counted once.

Hostile input costs about what a valid message costs. msgspec decodes the body in C straight into
typed fields (strings stay strings; a number is never converted: its text is kept) and fails fast on
anything else, so no input reaches a numeric conversion before a bounded ASCII grammar has accepted
its text. The fields are the seven above and no others: an unknown or repeated key is refused, so a
typo or a second "amount" never changes what is counted.

Amounts are integer minor units of their ISO 4217 currency (common.money: JPY 0 places, USD 2,
BHD 3). The bound `max_abs_amount` is in major units and applies in every currency.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

import msgspec

from common import money
from common.timeutil import SECOND_US, TimeFormatError, format_rfc3339, parse_rfc3339

SCHEMA_VERSION = 1
USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
TRANSACTION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CURRENCY = re.compile(r"[A-Z]{3}")
CATEGORY = re.compile(r"[A-Za-z0-9_ .&/-]{1,64}")
FIELDS = ("schema_version", "transaction_id", "user_id", "amount", "currency", "event_time", "merchant_category")
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
DEFAULT_MAX_ABS_AMOUNT = Decimal("1000000")  # in major units, in every currency
DEFAULT_MAX_BYTES = 8192

# The grammars every text passes before anything converts it (all ASCII, all bounded).
# An amount's grammar is common.money's (to_minor), the one decimal-to-minor-units conversion.
_NON_FINITE = frozenset(["nan", "inf", "infinity"])
# RFC 3339 with its offset (fromisoformat, which reads it, also takes forms RFC 3339 does not).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
# Epoch seconds in the CSV form: up to 12 digits, up to microseconds.
_EPOCH = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,6}))?", re.ASCII)
_CSV_NAMESPACE = uuid.UUID("6f1c9a52-3a8e-4d0b-9a57-2d0c5e1f7b11")
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)

# Reading raw JSON: what follows a key, a key's quote apart from its colon, the NaN/Infinity literals
# msgspec refuses (named here for the amount), a JSON integer that fits in 64 bits, the longest
# number text kept (anything longer is not a number this schema has), msgspec's unknown-key message.
_COLON = re.compile(rb"\s*:")
_SPACED_COLON = re.compile(rb'"\s+:')
_AMOUNT_LITERAL = re.compile(rb'"amount"\s*:\s*(-?(?:NaN|Infinity))')
_SMALL_INT = re.compile(rb"-?[0-9]{1,18}")
_LONGEST_NUMBER = 64
_UNKNOWN_FIELD = re.compile(r"unknown field `(.*)`")


class MessageError(ValueError):
    """A message that cannot be spooled. `reason` is a short code, `detail` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Transaction(msgspec.Struct, frozen=True, gc=False):
    """One valid transaction (immutable; built in C, a few times faster than a frozen dataclass)."""

    transaction_id: str
    user_id: str
    amount_minor: int  # in the currency's minor units (common.money)
    currency: str
    event_time: datetime
    merchant_category: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "transaction_id": self.transaction_id,
            "user_id": self.user_id,
            "amount": money.format_minor(self.amount_minor, self.currency),
            "currency": self.currency,
            "event_time": format_rfc3339(self.event_time),
            "merchant_category": self.merchant_category,
        }

    def encode(self) -> bytes:
        """The message body as compact UTF-8 JSON."""
        return _ENCODER.encode(self.to_json_dict())

    def attributes(self) -> dict[str, str]:
        return {"event_time": format_rfc3339(self.event_time), "schema_version": str(SCHEMA_VERSION)}


_ENCODER = msgspec.json.Encoder()
_UNSET: Any = msgspec.UNSET


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    """The valid message's shape, decoded in one C pass: anything else fails and takes the careful
    path, which names what is wrong."""

    transaction_id: str
    user_id: str
    amount: str
    event_time: str
    schema_version: int | str = _UNSET
    currency: str = _UNSET
    merchant_category: str = _UNSET


class _Fields(msgspec.Struct, forbid_unknown_fields=True):
    """Any object of the known keys, each value kept as its raw JSON text (skipped, not decoded)."""

    schema_version: msgspec.Raw = _UNSET
    transaction_id: msgspec.Raw = _UNSET
    user_id: msgspec.Raw = _UNSET
    amount: msgspec.Raw = _UNSET
    currency: msgspec.Raw = _UNSET
    event_time: msgspec.Raw = _UNSET
    merchant_category: msgspec.Raw = _UNSET


_WIRE = msgspec.json.Decoder(_Wire)
_FIELDS = msgspec.json.Decoder(_Fields)
_TEXT = msgspec.json.Decoder(str)
_ANY_RAW = msgspec.json.Decoder(msgspec.Raw)


class _Container:
    """Stands for a JSON array or object value (never decoded)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Number:
    """The text of a JSON number that is not a small integer, kept unconverted."""

    def __init__(self, text: str) -> None:
        self.text = text


def _type_name(value: Any) -> str:
    if isinstance(value, _Container):
        return value.kind
    if isinstance(value, _Number):
        return "number"
    return {bool: "boolean", int: "number", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


def check_user_id(value: Any) -> str:
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        shown = value if isinstance(value, str) else _type_name(value)
        raise MessageError("bad_user_id", f"'user_id' must match [A-Za-z0-9_.-]{{1,64}}, got {shown[:80]!r}")
    return value


_KNOWN: set[str] = set()  # the codes seen so far that CLDR knows (a few hundred at most)


def _learn_currency(code: str) -> bool:
    if money.is_currency(code):
        _KNOWN.add(code)
        return True
    return False


def parse_amount(value: Any, currency: str = "USD", max_abs_amount: Decimal = DEFAULT_MAX_ABS_AMOUNT) -> int:
    """A decimal string (or the text of a JSON number) in `currency` -> integer minor units.

    Refused: anything but a plain decimal (bad_amount; no exponent, no other script's digits),
    NaN/Infinity (non_finite_amount), more places than the currency has (too_many_decimals),
    more than max_abs_amount in size (absurd_amount)."""
    if isinstance(value, _Number):
        text = value.text
    elif isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MessageError("bad_type", f"'amount' must be a decimal string, got {_type_name(value)}")
    else:
        text = str(value)  # a JSON integer here has at most 19 digits (_scalar)
    bound = money.floor_to_minor(max_abs_amount, currency)
    try:
        units = money.to_minor(text, currency)  # its bounded ASCII grammar comes first
    except money.TooManyPlaces as exc:
        most = f"at most {exc.places} decimal places" if exc.places else "no decimal places"
        detail = f"'amount' {text[:40]!r} has more decimals than {currency} allows ({most})"
        raise MessageError("too_many_decimals", detail) from None
    except money.AmountTooLarge:
        _refuse_absurd(text, currency, bound)
    except money.AmountError:
        if len(text) <= 9 and text.lstrip("+-").lower() in _NON_FINITE:
            raise MessageError("non_finite_amount", f"'amount' must be finite, got {text!r}") from None
        raise MessageError("bad_amount", f"'amount' must be a plain decimal such as 42.17, got {text[:40]!r}") from None
    if abs(units) > bound:
        _refuse_absurd(text, currency, bound)
    return units


def _refuse_absurd(text: str, currency: str, bound: int) -> NoReturn:
    limit = money.format_minor(bound, currency)
    raise MessageError("absurd_amount", f"'amount' {text[:40]} {currency} exceeds {limit} in size")


def check_event_time(event_time: datetime, now: datetime) -> datetime:
    if event_time < EARLIEST_EVENT:
        raise MessageError("absurd_event_time", f"'event_time' {format_rfc3339(event_time)} is before 2000-01-01")
    if event_time > now + MAX_FUTURE:
        raise MessageError("absurd_event_time", f"'event_time' {format_rfc3339(event_time)} is more than a day ahead")
    return event_time


def _parse_event_time(value: Any, now: datetime) -> datetime:
    if value is _UNSET or value is None:
        raise MessageError("missing_field", "'event_time' is required")
    if not isinstance(value, str):
        raise MessageError("bad_type", f"'event_time' must be a string, got {_type_name(value)}")
    if not _RFC3339.fullmatch(value):
        detail = f"'event_time' must be RFC 3339 with an offset, such as 2026-11-21T08:00:00Z, got {value[:40]!r}"
        raise MessageError("bad_event_time", detail)
    try:
        event_time = parse_rfc3339(value)
    except TimeFormatError as exc:
        raise MessageError("bad_event_time", f"'event_time' {exc}") from None
    return check_event_time(event_time, now)


def _check_fields(
    version: Any,
    transaction_id: Any,
    user_id: Any,
    amount: Any,
    currency: Any,
    event_time: Any,
    category: Any,
    now: datetime,
    max_abs_amount: Decimal,
) -> Transaction:
    """The per-field checks, in FIELDS order; a value of _UNSET is an absent key."""
    if version is not _UNSET and (isinstance(version, bool) or version not in (SCHEMA_VERSION, "1")):
        shown = version if isinstance(version, (str, int)) else _type_name(version)
        raise MessageError("bad_schema_version", f"'schema_version' must be {SCHEMA_VERSION}, got {str(shown)[:20]!r}")
    if transaction_id is _UNSET or transaction_id is None:
        raise MessageError("missing_field", "'transaction_id' is required")
    if not isinstance(transaction_id, str):
        raise MessageError("bad_type", f"'transaction_id' must be a string, got {_type_name(transaction_id)}")
    if not TRANSACTION_ID.fullmatch(transaction_id):
        raise MessageError(
            "bad_transaction_id", f"'transaction_id' must match [A-Za-z0-9_.:-]{{1,128}}, got {transaction_id[:80]!r}"
        )
    if user_id is _UNSET or user_id is None:
        raise MessageError("missing_field", "'user_id' is required")
    check_user_id(user_id)
    if currency is _UNSET:
        currency = "USD"
    elif not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        shown = currency if isinstance(currency, str) else _type_name(currency)
        raise MessageError("bad_currency", f"'currency' must be a 3-letter ISO 4217 code, got {shown[:20]!r}")
    if currency not in _KNOWN and not _learn_currency(currency):
        raise MessageError("unknown_currency", f"'currency' {currency!r} is not an ISO 4217 code")
    if amount is _UNSET or amount is None:
        raise MessageError("missing_field", "'amount' is required")
    amount_minor = parse_amount(amount, currency, max_abs_amount)
    when = _parse_event_time(event_time, now)
    if category is _UNSET:
        category = "unknown"
    elif not isinstance(category, str) or not CATEGORY.fullmatch(category):
        shown = category if isinstance(category, str) else _type_name(category)
        raise MessageError(
            "bad_merchant_category", f"'merchant_category' must be 1-64 plain characters, got {shown[:40]!r}"
        )
    return Transaction(transaction_id, user_id, amount_minor, currency, when, category)


def _keys_at_least(data: bytes) -> int:
    """At least as many as the object has keys: the closing quotes followed by ':' (and, when a
    key's quote and colon are apart, more than any object has), so a repeated key cannot hide. A
    value starting with ':' counts too; that only sends the message the careful way."""
    return data.count(b'":') if _SPACED_COLON.search(data) is None else len(data)


def _scalar(raw: bytes) -> Any:
    """One raw JSON value (already checked by msgspec) as str, bool, None, _Number or _Container."""
    first = raw[:1]
    if first == b'"':
        return _TEXT.decode(raw)
    if first in (b"{", b"["):
        return _Container("object" if first == b"{" else "array")
    if raw == b"true" or raw == b"false":
        return raw == b"true"
    if raw == b"null":
        return None
    if _SMALL_INT.fullmatch(raw):
        return int(raw)
    if len(raw) > _LONGEST_NUMBER:
        raise MessageError("bad_json", f"not valid JSON: a number of {len(raw)} characters")
    return _Number(raw.decode("ascii"))


def _repeated_key(data: bytes) -> str | None:
    """The first key that appears twice in a flat JSON object of known keys, or None.

    With escaped backslashes and quotes taken out, the quotes alternate: open, close. A string whose
    closing quote is followed by ':' is a key. The walk stops at the first repeat, which comes within
    the first eight keys (there are seven names), so it costs the same whatever the length."""
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in data else data
    seen: set[str] = set()
    end = 0
    while (start := text.find(b'"', end)) >= 0 and (end := text.find(b'"', start + 1)) >= 0:
        end += 1
        if _COLON.match(text, end):
            key = text[start:end]
            name = _TEXT.decode(key) if b"\\" in key else key[1:-1].decode()
            if name in seen:
                return name
            seen.add(name)
    return None


def _parse_json_carefully(data: bytes, now: datetime, max_abs_amount: Decimal) -> Transaction:
    """The path of every body the fast decode refused: find the reason, at bounded cost."""
    start = data.lstrip()[:1]
    if start != b"{":
        _refuse_encoding(data)
        if not data.decode().strip():  # other whitespace than ASCII's
            raise MessageError("empty", "payload is empty")
        try:
            _ANY_RAW.decode(data)  # skipped, not built: a deep array costs no more than a flat one
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise MessageError("bad_json", f"not valid JSON: {exc}"[:200]) from None
        kind = {b"[": "array", b'"': "string", b"n": "null", b"t": "boolean", b"f": "boolean"}.get(start, "number")
        raise MessageError("bad_json", f"JSON body must be an object, got {kind}")
    try:
        fields = _FIELDS.decode(data)
    except msgspec.ValidationError as exc:
        unknown = _UNKNOWN_FIELD.search(str(exc))
        name = unknown.group(1)[:40] if unknown else "?"
        raise MessageError("unknown_field", f"field {name!r} is not one of {', '.join(FIELDS)}") from None
    except msgspec.DecodeError as exc:
        _refuse_encoding(data)
        literal = _AMOUNT_LITERAL.search(data)
        if literal:
            raise MessageError("non_finite_amount", f"'amount' must be finite, got {literal[1].decode()}") from None
        raise MessageError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    except RecursionError:
        raise MessageError("bad_json", "not valid JSON: too deeply nested") from None
    except UnicodeDecodeError:
        raise MessageError("bad_encoding", "payload is not UTF-8") from None
    raws = [raw if (raw := getattr(fields, name)) is _UNSET else bytes(raw) for name in FIELDS]
    present = [raw for raw in raws if raw is not _UNSET]
    # A repeated key is looked for when the keys may outnumber the fields, in a flat object (whose
    # keys can be listed without parsing; a nested value is refused by its field's check anyway).
    if _keys_at_least(data) > len(present) and not any(raw[:1] in (b"{", b"[") for raw in present):
        repeated = _repeated_key(data)
        if repeated is not None:
            raise MessageError("duplicate_key", f"'{repeated}' appears more than once")
    try:
        values = [raw if raw is _UNSET else _scalar(raw) for raw in raws]
    except UnicodeDecodeError:
        raise MessageError("bad_encoding", "payload is not UTF-8") from None
    version, transaction_id, user_id, amount, currency, event_time, category = values
    return _check_fields(version, transaction_id, user_id, amount, currency, event_time, category, now, max_abs_amount)


def _refuse_encoding(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("bad_encoding", "payload is not UTF-8") from None


def _parse_csv(data: bytes, now: datetime, max_abs_amount: Decimal) -> Transaction:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageError("bad_encoding", "payload is not UTF-8") from None
    if text.count(",") != 2:
        raise MessageError("bad_json", "body is neither a JSON object nor a 'user_id,amount,epoch_seconds' line")
    user_id, amount, epoch = (field.strip() for field in text.split(","))
    check_user_id(user_id)
    amount_minor = parse_amount(amount, "USD", max_abs_amount)
    seconds = _EPOCH.fullmatch(epoch)
    if seconds is None:
        raise MessageError(
            "bad_event_time", f"'epoch_seconds' must be up to 12 digits and 6 decimals, got {epoch[:40]!r}"
        )
    sign, whole, fraction = seconds.groups()
    micros = int(whole) * SECOND_US + int((fraction or "").ljust(6, "0"))
    try:
        event_time = _EPOCH_START + timedelta(microseconds=-micros if sign else micros)
    except OverflowError:  # 12 digits of seconds reach past the calendar's years 1-9999
        raise MessageError("absurd_event_time", f"'epoch_seconds' {epoch} is outside years 2000-9999") from None
    check_event_time(event_time, now)
    transaction_id = "csv-" + str(uuid.uuid5(_CSV_NAMESPACE, text.strip()))
    return Transaction(transaction_id, user_id, amount_minor, "USD", event_time, "unknown")


def parse_message(
    data: bytes,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_abs_amount: Decimal | str = DEFAULT_MAX_ABS_AMOUNT,
) -> Transaction:
    """Validate a message body and return the Transaction, or raise MessageError with the reason.

    max_abs_amount is in major units, in every currency (config key max_abs_amount)."""
    now = now or datetime.now(UTC)
    bound = _as_decimal(max_abs_amount)
    if len(data) > max_bytes:
        raise MessageError("oversize", f"payload is {len(data)} bytes, limit {max_bytes}")
    try:
        wire = _WIRE.decode(data) if data[:1] == b"{" else None  # a compact JSON object, or not
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        wire = None
    if wire is not None:
        # msgspec keeps the last of a repeated key. Each key and each string value brings two quotes
        # and nothing brings fewer, so as many quotes as the fields need means no key twice; more
        # (a repeat, or an escaped quote) and the keys of this flat object are listed.
        strings = 4 + (wire.currency is not _UNSET) + (wire.merchant_category is not _UNSET)
        keys = strings + (wire.schema_version is not _UNSET)
        strings += isinstance(wire.schema_version, str)
        if data.count(b'"') != 2 * (keys + strings) and (repeated := _repeated_key(data)) is not None:
            raise MessageError("duplicate_key", f"'{repeated}' appears more than once")
        return _check_fields(
            wire.schema_version,
            wire.transaction_id,
            wire.user_id,
            wire.amount,
            wire.currency,
            wire.event_time,
            wire.merchant_category,
            now,
            bound,
        )
    stripped = data.strip()
    if not stripped:
        raise MessageError("empty", "payload is empty")
    if stripped[:1] not in (b"{", b"[", b'"') and b"," in data:
        return _parse_csv(data, now, bound)
    return _parse_json_carefully(data, now, bound)


def _as_decimal(value: Decimal | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)
