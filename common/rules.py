"""The product's rules for the rows of the spool, named once for every engine that applies them.

The aggregation job applies them with Spark (jobs/aggregate/transforms.py) and the analysts' SQL
views with DuckDB (jobs/sql/views.py); both build their expressions from the names below, and
tests/integration/test_sql_agrees_with_job.py checks on one spool that the views keep the ids and
the sums the job writes to Bigtable.

- Identity: a transaction id is a transaction's identity. Its copies must agree on IDENTITY; a copy
  that differs in one of those fields is a conflict (the merchant category is descriptive and may
  differ between copies).
- The copy kept: of all copies of an id, the first in KEEP_ORDER (published first, then the
  smallest message id; the other fields only break ties between copies of one message, so the pick
  never depends on how the rows were split or ordered). Ascending, a null before any value (an old
  spool file's amount its currency cannot hold is null, see money.rescale).
- Set aside: an id whose kept copy has no amount (null) is not counted, nor are its other copies.
- Late: a kept copy published more than the late horizon (config late_horizon_hours) after its event
  time, compared in whole microseconds (`late_after_us`). Decided per record from its own two times,
  so it never depends on when a run happens. Late rows are not counted.
"""

from __future__ import annotations

from common.timeutil import SECOND_US

IDENTITY = ("user_id", "amount_minor", "currency", "event_time")
KEEP_ORDER = ("publish_time", "message_id", "user_id", "amount_minor", "currency", "merchant_category", "event_time")


def late_after_us(late_horizon_seconds: float) -> int:
    """The largest publish lag (publish time minus event time, in microseconds) of a row on time:
    a row whose lag is greater is late. The horizon counts in whole seconds."""
    return int(late_horizon_seconds) * SECOND_US
