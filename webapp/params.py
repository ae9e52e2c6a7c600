"""Query parameters: one pydantic model per route, the single table both the request check and the
OpenAPI document's parameters (webapp/openapi.py) are built from. `Model.parse(...)` gives the
route's values or raises BadParameter (400) naming the parameter in one line.

A wrong value is told what it must be in the words of its check (the time and currency checks
below), or else from its JSON schema: "must be an integer from 1 to 500", "must match <pattern>",
"is required". An empty value counts as absent; unknown parameters are ignored."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from common.message import USER_ID
from common.money import is_currency
from common.timeutil import TimeFormatError, format_rfc3339, parse_time, to_epoch_us
from webapp.errors import BadParameter

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # row keys hold times up to year 2286
_DIGITS = re.compile(r"[0-9]{1,9}")
TIME_FORMS = "a time such as -1h, -30m, 0m, now, 2026-01-01T00:00:00Z or epoch seconds"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def start_us(self) -> int:
        return to_epoch_us(self.start)

    @property
    def end_us(self) -> int:
        return to_epoch_us(self.end)

    def as_json(self) -> dict[str, str]:
        return {"from": format_rfc3339(self.start), "to": format_rfc3339(self.end)}


# --- the checks a JSON schema cannot say -----------------------------------------------------------


def _digits(value: Any) -> Any:
    """Only ASCII digits make a count: pydantic alone would take "+5", " 5", "5_0" and "5.0"."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise PydanticCustomError("int_parsing", "not an integer")
    return value


def _time(value: Any, info: ValidationInfo) -> datetime:
    """A time in any accepted form, as aware UTC; relative to the `now` given to parse()."""
    raw = str(value)
    try:
        when = parse_time(raw, now=(info.context or {}).get("now"))
    except (TimeFormatError, OverflowError, ValueError):
        raise ValueError(f"expected {TIME_FORMS}, got {raw[:80]!r}") from None
    if not EARLIEST <= when < LATEST:
        raise ValueError(f"must lie between 1970-01-01 and 2200-01-01, got {raw[:80]!r}")
    return when


def _currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError(f"must be an ISO 4217 currency code such as USD, EUR or JPY, got {value[:20]!r}")
    return value


UserId = Annotated[str, Field(pattern=f"^{USER_ID.pattern}$", description="The card holder.")]
Count = Annotated[int, BeforeValidator(_digits)]
Time = Annotated[datetime, PlainValidator(_time, json_schema_input_type=str)]
# CLDR knows the codes (is_currency); the pattern is the shape the document shows.
Currency = Annotated[
    str, AfterValidator(_currency), Field(json_schema_extra={"pattern": "^[A-Z]{3}$", "example": "USD"})
]
CURRENCY = (
    "ISO 4217 code of the currency of the top-level sum and count (default: the server's configured "
    "currency). Sums are never added across currencies."
)


MAX_QUANTILES = 10
_FRACTION = r"(0(\.[0-9]{1,6})?|1(\.0{1,6})?)"
FRACTIONS_PATTERN = f"^{_FRACTION}(,{_FRACTION}){{0,{MAX_QUANTILES - 1}}}$"


def _fractions(value: Any) -> tuple[float, ...]:
    """ "0.5,0.9,0.99" -> (0.5, 0.9, 0.99): 1 to MAX_QUANTILES fractions from 0 to 1."""
    raw = str(value)
    if not re.fullmatch(FRACTIONS_PATTERN, raw):
        raise ValueError(
            f"must be 1 to {MAX_QUANTILES} comma-separated fractions from 0 to 1 (at most 6 places) such as "
            f"0.5,0.9,0.99, got {raw[:80]!r}"
        )
    return tuple(float(part) for part in raw.split(","))


Fractions = Annotated[
    tuple[float, ...],
    PlainValidator(_fractions, json_schema_input_type=str),
    Field(json_schema_extra={"pattern": FRACTIONS_PATTERN, "example": "0.5,0.9,0.99"}),
]
QUANTILES = (
    "The quantiles wanted, as fractions from 0 to 1 (0.5 is the median, 0 the smallest amount, 1 the largest), "
    f"comma-separated, at most {MAX_QUANTILES}."
)


def _count(default: int, low: int, high: int, description: str) -> Any:
    return Field(default, ge=low, le=high, description=description)


def _from(default: str = "-1h") -> Any:
    return Field(default, alias="from", validate_default=True)


def _to() -> Any:
    return Field("now", alias="to", validate_default=True)


def _page_token(continues: str) -> Any:
    return Field(None, description=f"The next_page_token of the previous page, to continue {continues} it.")


# --- the tables --------------------------------------------------------------------------------------


class Query(BaseModel):
    """A route's parameters; a field named in the route's URL ({user_id}) comes from the path."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data

    @classmethod
    def parse(cls, args: Any, now: datetime, **path: str) -> Self:
        """The route's values from the query string `args` (a Mapping; the first value of each
        name) and the URL's `path` values, which win; relative times count from `now`. Raises
        BadParameter naming the first wrong one."""
        try:
            return cls.model_validate({**dict(args.items()), **path}, context={"now": now})
        except ValidationError as exc:
            raise _refusal(cls, exc.errors()[0]) from None


@functools.cache
def json_schema(model: type[Query]) -> dict[str, Any]:
    """The model's JSON schema (validation mode, by alias): what webapp/openapi.py documents."""
    return model.model_json_schema()


def _refusal(model: type[Query], error: ErrorDetails) -> BadParameter:
    """pydantic's first error as the one line a client gets."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, BadParameter):  # a check across parameters names its own
        return cause
    name = str(error["loc"][0])
    if error["type"] == "missing":
        return BadParameter(name, "is required")
    if isinstance(cause, ValueError):
        return BadParameter(name, str(cause))
    schema = json_schema(model)["properties"][name]
    if "anyOf" in schema:  # an optional parameter: its checks are on the branch that is not null
        schema = next(branch for branch in schema["anyOf"] if branch.get("type") != "null")
    shown = str(error["input"])
    if "maximum" in schema:
        low, high = schema["minimum"], schema["maximum"]
        return BadParameter(name, f"must be an integer from {low} to {high}, got {shown[:40]!r}")
    return BadParameter(name, f"must match {schema['pattern'].strip('^$')}, got {shown[:80]!r}")


def _describe_range(schema: dict[str, Any], model: type[Any]) -> None:
    """`from` and `to` described with the route's clock, default and longest span."""
    for name, bound in (("from", "Inclusive"), ("to", "Exclusive")):
        field = schema["properties"][name]
        field["description"] = (
            "A relative time (-1h, -30m, -2d, 0m, now), an ISO-8601 time with or without offset (without = "
            f"UTC), or epoch seconds. {model.CLOCK}, UTC. {bound}; default {field['default']}. The range may "
            f"span at most {_span(model.MAX_SPAN)}."
        )


class RangeQuery(Query):
    """A route over [from, to): from <= to, at most MAX_SPAN apart. Each subclass lists `start`
    (from) and `end` (to) where it wants them among its parameters."""

    model_config = ConfigDict(json_schema_extra=_describe_range)
    MAX_SPAN: ClassVar[timedelta]
    CLOCK: ClassVar[str] = "Event time"
    if TYPE_CHECKING:
        start: datetime
        end: datetime

    @model_validator(mode="after")
    def _ordered_and_short(self) -> Self:
        if self.start > self.end:
            raise BadParameter("from", f"{format_rfc3339(self.start)} is after 'to' {format_rfc3339(self.end)}")
        if self.end - self.start > self.MAX_SPAN:
            raise BadParameter("from", f"the range from 'from' to 'to' may span at most {_span(self.MAX_SPAN)}")
        return self

    @property
    def span(self) -> TimeRange:
        return TimeRange(self.start, self.end)


class SumQuery(RangeQuery):
    MAX_SPAN = timedelta(days=366)
    user_id: UserId
    start: Time = _from()
    end: Time = _to()
    currency: Currency | None = Field(None, description=CURRENCY)


class HourlyQuery(RangeQuery):
    MAX_SPAN = timedelta(days=31)
    user_id: UserId
    start: Time = _from()
    end: Time = _to()
    currency: Currency | None = Field(None, description=CURRENCY)


class TransactionsQuery(RangeQuery):
    MAX_SPAN = timedelta(days=366)
    user_id: UserId
    start: Time = _from()
    end: Time = _to()
    limit: Count = _count(50, 1, 500, "Transactions per page.")
    page_token: str | None = _page_token("below")


class LatestQuery(Query):
    user_id: UserId
    n: Count = _count(5, 1, 100, "How many.")


class TopUsersQuery(Query):
    hours: Count = _count(3, 1, 168, "Whole hours: the current hour and the hours-1 before it.")
    n: Count = _count(10, 1, 100, "How many users.")
    currency: Currency | None = Field(None, description=CURRENCY)


class PerMinuteQuery(Query):
    minutes: Count = _count(60, 1, 1440, "The current minute and the minutes-1 before it.")
    currency: Currency | None = Field(None, description=CURRENCY)


class LateQuery(RangeQuery):
    MAX_SPAN = timedelta(days=31)
    CLOCK = "Publish time"
    start: Time = _from("-7d")
    end: Time = _to()
    limit: Count = _count(100, 1, 500, "Rows per page.")
    page_token: str | None = _page_token("after")


CATEGORY_CURRENCY = "Only this currency (ISO 4217 code); default every currency present."


class UserCategoriesQuery(RangeQuery):
    MAX_SPAN = timedelta(days=366)
    user_id: UserId
    start: Time = _from("-24h")
    end: Time = _to()
    currency: Currency | None = Field(None, description=CATEGORY_CURRENCY)


class CategoriesQuery(RangeQuery):
    MAX_SPAN = timedelta(days=366)
    start: Time = _from("-24h")
    end: Time = _to()
    currency: Currency | None = Field(None, description=CATEGORY_CURRENCY)


MINUTE_SPAN = timedelta(days=1)


class TotalsQuery(RangeQuery):
    MAX_SPAN = timedelta(days=31)
    start: Time = _from("-24h")
    end: Time = _to()
    granularity: str = Field(
        "hour",
        pattern="^(hour|minute)$",
        description=f"hour, or minute (then the range may span at most {MINUTE_SPAN.days} day).",
    )
    currency: Currency | None = Field(None, description=CURRENCY)

    @model_validator(mode="after")
    def _minutes_short(self) -> Self:
        if self.granularity == "minute" and self.end - self.start > MINUTE_SPAN:
            raise BadParameter(
                "granularity", f"minute totals may span at most {MINUTE_SPAN.days} day; use hour or a shorter range"
            )
        return self


class AllLatestQuery(Query):
    n: Count = _count(100, 1, 500, "How many, newest first.")


class ConflictsQuery(Query):
    limit: Count = _count(10, 1, 100, "How many.")


class RunsStreamQuery(Query):
    # The bounds ahead of the digit check: so placed, the schema says minimum and maximum.
    after: Annotated[int, Field(ge=0, le=999_999_999), BeforeValidator(_digits)] | None = Field(
        None,
        description="Send the runs after this run id (a reconnecting browser's Last-Event-ID header wins over "
        "it); default: only runs that finish from now on. 0: every run.",
    )


class PercentilesQuery(RangeQuery):
    """All users' amounts over [from, to)."""

    MAX_SPAN = timedelta(days=92)
    start: Time = _from("-24h")
    end: Time = _to()
    q: Fractions = Field("0.5,0.9,0.99", validate_default=True, description=QUANTILES)


class UserPercentilesQuery(PercentilesQuery):
    """One user's amounts over [from, to)."""

    user_id: UserId


class UsersQuery(Query):
    prefix: str = Field("", pattern="^[A-Za-z0-9_.-]{0,64}$")
    limit: Count = _count(20, 1, 500, "How many ids.")


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days"
    return f"{int(span.total_seconds() // 3600)} hours"
