"""Load and validate the pipeline's JSON config. A wrong value gets one line naming the key.

Each key is one line of `Config`: its type, its default and its check. pydantic runs the checks
(strict types, bounds, patterns, and the small functions below for what a pattern cannot say); the
first failure becomes one line, "config key 'k' must be <form>, got <value>", where <form> is the
check's own words or else the field's description. The few checks that read several keys
(`_check_across`, `currency_ranges`) run after.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, DecimalException
from pathlib import Path
from typing import Annotated, Any, get_type_hints
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SkipValidation, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from common import money
from common.timeutil import TimeFormatError, parse_duration, parse_time

DEFAULT_PATHS = ("config.json", "config.sample.json")
SECRET_KEYS = ("ingest_token", "read_token")


class ConfigError(ValueError):
    """A config file that is missing, unreadable or holds a wrong value."""


# --- the per-key checks ---------------------------------------------------------------------------
# A check raises ValueError with the form the value must take; it never sees the key's name.

_AMOUNT_FORM = 'a decimal string with at most two places, such as "20.00"'
_TIME_FORM = "a time such as -48h, now or 2026-01-01T00:00:00Z"
_RATE_FORM = 'a rate such as "120 per minute" or "10/second"'
_ORIGIN_FORM = "an origin such as https://txn.example.com or http://10.0.0.5:5000 (no path)"
_MIX_FORM = 'an object of ISO 4217 code -> weight > 0, such as {"USD": 0.8, "EUR": 0.15, "JPY": 0.05}'
_AMOUNTS_FORM = 'an object of ISO 4217 code -> ["min", "max"], such as {"JPY": ["500", "20000"]}'


def _amount(value: Any) -> Any:
    """A decimal amount with at most two places; a float is refused (it has lost them already)."""
    try:
        amount = Decimal(str(value))
        exact = amount.is_finite() and amount == amount.quantize(Decimal("0.01"))
    except DecimalException:
        raise ValueError('a decimal amount such as "20.00"') from None
    if isinstance(value, float) or not exact:
        raise ValueError(_AMOUNT_FORM)
    return value


def _above_zero(value: str) -> str:
    if Decimal(value) <= 0:
        raise ValueError("a positive amount")
    return value


def _time(value: str) -> str:
    try:
        parse_time(value)
    except TimeFormatError:
        raise ValueError(_TIME_FORM) from None
    return value


def _rate(value: str) -> str:
    from limits import parse_many  # the grammar Flask-Limiter enforces it with

    try:
        if not parse_many(value):
            raise ValueError
    except ValueError:
        raise ValueError(_RATE_FORM) from None
    return value


def _origin(value: Any) -> str:
    """'https://Host:443' -> 'https://host': the form a browser sends in an Origin header."""
    if not isinstance(value, str):
        raise ValueError(_ORIGIN_FORM)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(_ORIGIN_FORM) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(_ORIGIN_FORM)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(_ORIGIN_FORM)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


_SPOOL_FORM = "a local path, or gs://bucket/prefix (bucket: 3-63 lowercase letters, digits, '-', '_' or '.')"
_GS_URI = re.compile(r"gs://[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9](/[^\s]*)?")


def _spool_dir(value: str) -> str:
    """A gs:// spool must name a valid bucket (other URIs are left to the job's Hadoop)."""
    if value.startswith("gs:") and not _GS_URI.fullmatch(value):
        raise ValueError(_SPOOL_FORM)
    return value


def _text(pattern: str, form: str) -> Any:
    """A string in which `pattern` is found (anchor it to match the whole), described by `form`."""
    return Field(strict=True, pattern=pattern, description=form)


def _at_least(low: int) -> Any:
    return Field(strict=True, ge=low, description=f"an integer >= {low}")


def _positive() -> Any:
    return Field(strict=True, gt=0, description="a number > 0")


def _form(form: str) -> Any:
    return Field(strict=True, description=form)


_Id = Annotated[
    str, _text(r"^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$", "3-255 letters, digits or -_.~+% starting with a letter")
]
_Instance = Annotated[str, _text(r"^[a-z][a-z0-9-]{4,31}$", "6-33 lowercase letters, digits or hyphens")]
_Table = Annotated[str, _text(r"^[A-Za-z0-9_.-]{1,50}$", "1-50 letters, digits or _.-")]
_Path = Annotated[str, AfterValidator(_spool_dir), _text(r"\S", "a non-empty path or Hadoop-compatible URI")]
_Currency = Annotated[str, _text(r"^[A-Z]{3}$", 'a 3-letter ISO 4217 code such as "USD"')]
_Host = Annotated[str, _text(r"^$|^[A-Za-z0-9_.\[\]:-]+:[0-9]{1,5}$", 'host:port, or "" to use Google Cloud')]
_Secret = Annotated[
    str, _text(r"^$|^[\x21-\x7e]{16,512}$", '"" (no check) or 16-512 printable ASCII characters without spaces')
]
_Amount = Annotated[str, BeforeValidator(_amount), _form(_AMOUNT_FORM)]
_Time = Annotated[str, AfterValidator(_time), _form(_TIME_FORM)]
_Rate = Annotated[str, AfterValidator(_rate), _form(_RATE_FORM)]
_Origins = Annotated[
    tuple[Annotated[str, BeforeValidator(_origin)], ...],
    Field(description='a list of origins such as ["https://txn.example.com"]'),
]


@dataclass(frozen=True)
class Config:
    project_id: _Id = "demo-project"
    instance_id: _Instance = "demo-ti"
    table_id: _Table = "transactions"
    topic_id: _Id = "transactions"
    subscription_id: _Id = "transactions-spooler"
    spool_dir: _Path = "spool"
    users: Annotated[int, _at_least(1)] = 100
    mean_spending_period_seconds: Annotated[float, _positive()] = 1800.0
    min_spending_period_seconds: Annotated[float, _positive()] = 60.0
    amount_min: _Amount = "20.00"
    amount_max: _Amount = "100.00"
    currency: _Currency = "USD"
    # The emitter's {code: weight} ({}: all in `currency`) and {code: [min, max]}, checked by
    # currency_ranges, which reads `currency` too. Dicts cannot be hashed: left out of the hash,
    # which the other keys still make.
    currency_mix: Annotated[dict[str, float], SkipValidation, Field(description=_MIX_FORM)] = field(
        default_factory=dict, hash=False
    )
    currency_amounts: Annotated[dict[str, list[str]], SkipValidation, Field(description=_AMOUNTS_FORM)] = field(
        default_factory=dict, hash=False
    )
    simulation_start: _Time = "-48h"
    simulation_end: _Time = "now"
    seed: Annotated[int, _at_least(0)] = 42
    live_speedup: Annotated[float, _positive()] = 60.0
    late_horizon_hours: Annotated[int, _at_least(1)] = 72
    spool_roll_messages: Annotated[int, _at_least(1)] = 50_000
    spool_roll_seconds: Annotated[float, _positive()] = 10.0
    stream_poll_seconds: Annotated[float, _positive()] = 1.0
    compact_after_seconds: Annotated[float, _positive()] = 600.0
    compact_min_files: Annotated[int, _at_least(2)] = 20
    max_payload_bytes: Annotated[int, _at_least(64)] = 8192
    max_abs_amount: Annotated[_Amount, AfterValidator(_above_zero)] = "1000000.00"
    ingest_token: _Secret = ""
    read_token: _Secret = ""
    allowed_origins: _Origins = ()
    post_rate_limit: _Rate = "120 per minute"
    pubsub_emulator_host: _Host = "127.0.0.1:8085"
    bigtable_emulator_host: _Host = "127.0.0.1:8086"
    outage_backoff_max_seconds: Annotated[float, _positive()] = 60.0
    outage_report_seconds: Annotated[float, _positive()] = 60.0
    job_lease_seconds: Annotated[float, _positive()] = 60.0
    # How long one Bigtable read of the job (driver and executors) retries before the run fails
    # as an outage; the library's own default is 600 s.
    bigtable_timeout_seconds: Annotated[float, _positive()] = 60.0
    # A run's memory follows its input: a backlog is counted in slices of this many spool files.
    job_max_files_per_run: Annotated[int, _at_least(1)] = 200
    # The spooler's Prometheus metrics (jobs/spooler/metrics.py): port 0 serves none.
    spooler_metrics_port: Annotated[
        int, Field(strict=True, ge=0, le=65535, description="a port 1-65535, or 0 to serve no metrics")
    ] = 0
    spooler_metrics_host: Annotated[
        str, _text(r"^[A-Za-z0-9_.:-]{1,253}$", 'an address to listen on such as "127.0.0.1" or "0.0.0.0"')
    ] = "127.0.0.1"
    # GET /api/v1/runs/stream (webapp/push.py): open streams per server process (each holds one of
    # its threads; txn-serve wants --threads above it), the keep-alive comment's period, and how
    # often the process's one poller reads the job's row.
    push_max_streams: Annotated[int, _at_least(1)] = 4
    push_heartbeat_seconds: Annotated[float, _positive()] = 15.0
    push_poll_seconds: Annotated[float, _positive()] = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Every key, secrets included (to write a config file); lists as lists."""
        data = asdict(self)
        data["allowed_origins"] = list(self.allowed_origins)
        return data

    def __repr__(self) -> str:
        # The config travels in logs, tracebacks and pickles to Spark executors: never the secrets.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'<hidden>' if f.name in SECRET_KEYS and value else repr(value)}")
        return f"Config({', '.join(shown)})"


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"config key '{key}' must be {expected}, got {value!r}")


@functools.cache
def _validator() -> TypeAdapter[Config]:
    return TypeAdapter(Config)


@functools.cache
def _forms() -> dict[str, str]:
    """Each key's description: the form a wrong value is told to take."""
    hints = get_type_hints(Config, include_extras=True)
    return {
        key: meta.description
        for key, hint in hints.items()
        for meta in getattr(hint, "__metadata__", ())
        if isinstance(meta, FieldInfo) and meta.description
    }


def _refusal(error: ErrorDetails) -> ConfigError:
    """pydantic's first error as the one line users get: the key, the form, the value."""
    key = str(error["loc"][0])
    cause = error.get("ctx", {}).get("error")
    expected = str(cause) if isinstance(cause, ValueError) else _forms()[key]
    if key in SECRET_KEYS:  # the value itself is never echoed
        return ConfigError(f"config key '{key}' must be {expected}")
    return _fail(key, expected, error["input"])


def _check_across(cfg: Config) -> Config:
    """The checks that read more than one key; raises ConfigError naming the first wrong one."""
    if cfg.min_spending_period_seconds > cfg.mean_spending_period_seconds:
        raise _fail(
            "min_spending_period_seconds",
            f"<= mean_spending_period_seconds ({cfg.mean_spending_period_seconds})",
            cfg.min_spending_period_seconds,
        )
    if Decimal(cfg.amount_min) > Decimal(cfg.amount_max):
        raise _fail("amount_max", f">= amount_min ({cfg.amount_min})", cfg.amount_max)
    currency_ranges(cfg)
    return cfg


def _in_currency(key: str, amount: Any, currency: str) -> int:
    """A config amount as minor units of `currency`, or ConfigError naming `key`."""
    try:
        if isinstance(amount, str):
            return money.to_minor(amount, currency)
    except ValueError:
        pass
    places = money.exponent(currency)
    shown = repr(amount)[:40]  # a bounded echo of whatever was there
    raise ConfigError(f"config key '{key}' must be an amount in {currency} (at most {places} places), got {shown}")


def currency_ranges(cfg: Config) -> dict[str, tuple[int, int]]:
    """The emitter's currencies (`currency` when `currency_mix` is {}, else the mix's), each with its
    amount range in minor units, both ends inclusive: its `currency_amounts` entry, else the same
    number of minor units as amount_min..amount_max in `currency` (by default 2000..10000: 20.00..
    100.00 USD or EUR, 2000..10000 JPY). Raises ConfigError naming the key."""
    if not money.is_currency(cfg.currency):
        raise _fail("currency", 'an ISO 4217 code such as "USD"', cfg.currency)
    mix, amounts = cfg.currency_mix, cfg.currency_amounts
    if not isinstance(mix, dict):
        raise _fail("currency_mix", _MIX_FORM, mix)
    for code, weight in mix.items():
        if not money.is_currency(code):
            raise _fail("currency_mix", 'keyed by ISO 4217 codes such as "EUR"', code)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
            raise ConfigError(f"config key 'currency_mix' must give {code} a weight > 0, got {repr(weight)[:40]}")
    if not isinstance(amounts, dict):
        raise _fail("currency_amounts", _AMOUNTS_FORM, amounts)
    spent = list(mix) or [cfg.currency]
    default = (
        _in_currency("amount_min", cfg.amount_min, cfg.currency),
        _in_currency("amount_max", cfg.amount_max, cfg.currency),
    )
    ranges: dict[str, tuple[int, int]] = {}
    for code, bounds in amounts.items():
        if code not in spent:
            raise ConfigError(
                f"config key 'currency_amounts' names {str(code)[:20]!r}, not spent (spent: {', '.join(spent)})"
            )
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise _fail("currency_amounts", f'["min", "max"] for {code}', repr(bounds)[:80])
        low, high = (_in_currency("currency_amounts", bound, code) for bound in bounds)
        if low > high:
            raise _fail("currency_amounts", f"min <= max for {code}", repr(bounds)[:80])
        ranges[code] = (low, high)
    return {code: ranges.get(code, default) for code in spent}


def resolve_path(path: str | Path | None) -> Path:
    """The config file to read: the given path, else config.json, else config.sample.json."""
    if path:
        return Path(path)
    for candidate in DEFAULT_PATHS:
        if Path(candidate).exists():
            return Path(candidate)
    root = Path(__file__).resolve().parent.parent
    for candidate in DEFAULT_PATHS:
        if (root / candidate).exists():
            return root / candidate
    raise ConfigError("no config.json or config.sample.json found; pass --config PATH")


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a validated Config from a dict; unknown keys are refused (they are usually typos)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown config key '{unknown[0]}' (known keys: {', '.join(sorted(known))})")
    try:
        cfg = _validator().validate_python(data)
    except ValidationError as exc:
        raise _refusal(exc.errors()[0]) from None
    return _check_across(cfg)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read, merge overrides into, and validate a config file."""
    resolved = resolve_path(path)
    try:
        data = json.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {resolved}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{resolved}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" keys
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(data, str(resolved))


def late_horizon(cfg: Config) -> float:
    """The late-data horizon in seconds."""
    return parse_duration(f"{cfg.late_horizon_hours}h").total_seconds()
