"""Load and validate the pipeline's JSON config. A wrong value gets one line naming the key."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import money
from common.timeutil import TimeFormatError, parse_duration, parse_time

DEFAULT_PATHS = ("config.json", "config.sample.json")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9-]{4,31}$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
SECRET_KEYS = ("ingest_token", "read_token")


class ConfigError(ValueError):
    """A config file that is missing, unreadable or holds a wrong value."""


@dataclass(frozen=True)
class Config:
    project_id: str = "demo-project"
    instance_id: str = "demo-ti"
    table_id: str = "transactions"
    topic_id: str = "transactions"
    subscription_id: str = "transactions-spooler"
    spool_dir: str = "spool"
    users: int = 100
    mean_spending_period_seconds: float = 1800.0
    min_spending_period_seconds: float = 60.0
    amount_min: str = "20.00"
    amount_max: str = "100.00"
    currency: str = "USD"
    # The emitter's {code: weight} ({}: all in `currency`) and {code: [min, max]}. Dicts cannot be
    # hashed: left out of the hash, which the other keys still make.
    currency_mix: dict[str, float] = field(default_factory=dict, hash=False)
    currency_amounts: dict[str, list[str]] = field(default_factory=dict, hash=False)
    simulation_start: str = "-48h"
    simulation_end: str = "now"
    seed: int = 42
    live_speedup: float = 60.0
    late_horizon_hours: int = 72
    spool_roll_messages: int = 50_000
    spool_roll_seconds: float = 10.0
    max_payload_bytes: int = 8192
    max_abs_amount: str = "1000000.00"
    ingest_token: str = ""
    read_token: str = ""
    allowed_origins: tuple[str, ...] = ()
    post_rate_limit: str = "120 per minute"
    pubsub_emulator_host: str = "127.0.0.1:8085"
    bigtable_emulator_host: str = "127.0.0.1:8086"
    outage_backoff_max_seconds: float = 60.0
    outage_report_seconds: float = 60.0
    job_lease_seconds: float = 60.0
    job_max_files_per_run: int = 200  # a run's memory follows its input: a backlog is counted in slices

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


def _check_amount(key: str, value: Any) -> None:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _fail(key, 'a decimal amount such as "20.00"', value) from None
    if isinstance(value, float) or not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise _fail(key, 'a decimal string with at most two places, such as "20.00"', value)


def validate(cfg: Config) -> Config:
    """Check every value; raise ConfigError naming the first wrong key."""
    for key in ("project_id", "topic_id", "subscription_id"):
        value = getattr(cfg, key)
        if not isinstance(value, str) or not _ID.match(value):
            raise _fail(key, "3-255 letters, digits or -_.~+% starting with a letter", value)
    if not isinstance(cfg.instance_id, str) or not _INSTANCE.match(cfg.instance_id):
        raise _fail("instance_id", "6-33 lowercase letters, digits or hyphens", cfg.instance_id)
    if not isinstance(cfg.table_id, str) or not _TABLE.match(cfg.table_id):
        raise _fail("table_id", "1-50 letters, digits or _.-", cfg.table_id)
    if not isinstance(cfg.spool_dir, str) or not cfg.spool_dir.strip():
        raise _fail("spool_dir", "a non-empty path or Hadoop-compatible URI", cfg.spool_dir)
    for key, low in (
        ("users", 1),
        ("seed", 0),
        ("late_horizon_hours", 1),
        ("spool_roll_messages", 1),
        ("max_payload_bytes", 64),
        ("job_max_files_per_run", 1),
    ):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(key, f"an integer >= {low}", value)
    for key in (
        "mean_spending_period_seconds",
        "min_spending_period_seconds",
        "live_speedup",
        "spool_roll_seconds",
        "outage_backoff_max_seconds",
        "outage_report_seconds",
        "job_lease_seconds",
    ):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise _fail(key, "a number > 0", value)
    if cfg.min_spending_period_seconds > cfg.mean_spending_period_seconds:
        raise _fail(
            "min_spending_period_seconds",
            f"<= mean_spending_period_seconds ({cfg.mean_spending_period_seconds})",
            cfg.min_spending_period_seconds,
        )
    for key in ("amount_min", "amount_max", "max_abs_amount"):
        _check_amount(key, getattr(cfg, key))
    if Decimal(cfg.amount_min) > Decimal(cfg.amount_max):
        raise _fail("amount_max", f">= amount_min ({cfg.amount_min})", cfg.amount_max)
    if Decimal(cfg.max_abs_amount) <= 0:
        raise _fail("max_abs_amount", "a positive amount", cfg.max_abs_amount)
    if not isinstance(cfg.currency, str) or not re.fullmatch(r"[A-Z]{3}", cfg.currency):
        raise _fail("currency", 'a 3-letter ISO 4217 code such as "USD"', cfg.currency)
    currency_ranges(cfg)
    for key in ("simulation_start", "simulation_end"):
        value = getattr(cfg, key)
        try:
            parse_time(str(value))
        except TimeFormatError:
            raise _fail(key, "a time such as -48h, now or 2026-01-01T00:00:00Z", value) from None
    for key in ("pubsub_emulator_host", "bigtable_emulator_host"):
        value = getattr(cfg, key)
        if not isinstance(value, str) or (value and not re.fullmatch(r"[A-Za-z0-9_.\[\]:-]+:\d{1,5}", value)):
            raise _fail(key, 'host:port, or "" to use Google Cloud', value)
    for key in SECRET_KEYS:
        value = getattr(cfg, key)
        if not isinstance(value, str) or (value and not re.fullmatch(r"[\x21-\x7e]{16,512}", value)):
            # The value itself is never echoed.
            raise ConfigError(
                f"config key '{key}' must be \"\" (no check) or 16-512 printable ASCII characters without spaces"
            )
    _check_rate("post_rate_limit", cfg.post_rate_limit)
    return replace(cfg, allowed_origins=tuple(_origin(value) for value in _origin_list(cfg.allowed_origins)))


def _check_rate(key: str, value: Any) -> None:
    from limits import parse_many  # the grammar Flask-Limiter enforces it with

    try:
        if not isinstance(value, str) or not parse_many(value):
            raise ValueError
    except ValueError:
        raise _fail(key, 'a rate such as "120 per minute" or "10/second"', value) from None


def _origin_list(value: Any) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("allowed_origins", 'a list of origins such as ["https://txn.example.com"]', value)
    return list(value)


def _origin(value: Any) -> str:
    """'https://Host:443' -> 'https://host': the form a browser sends in an Origin header."""
    expected = "an origin such as https://txn.example.com or http://10.0.0.5:5000 (no path)"
    if not isinstance(value, str):
        raise _fail("allowed_origins", expected, value)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _fail("allowed_origins", expected, value) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise _fail("allowed_origins", expected, value)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise _fail("allowed_origins", expected, value)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


_MIX_FORM = 'an object of ISO 4217 code -> weight > 0, such as {"USD": 0.8, "EUR": 0.15, "JPY": 0.05}'
_AMOUNTS_FORM = 'an object of ISO 4217 code -> ["min", "max"], such as {"JPY": ["500", "20000"]}'


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
    return validate(Config(**data))


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
