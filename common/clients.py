"""Google clients, built in one place from the config.

PUBSUB_EMULATOR_HOST / BIGTABLE_EMULATOR_HOST, when set in the environment, win, exactly as the
Google libraries define them. When unset, the config's *_emulator_host keys fill them in; when
those are "" too, the same code talks to Google Cloud with application default credentials.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigtable
from google.cloud.bigtable import column_family

from common import bigtable_private, store
from common.config import Config

if TYPE_CHECKING:
    from google.cloud import pubsub_v1


def _pubsub() -> Any:
    """google.cloud.pubsub_v1, imported when first used: the Spark job's driver and Python workers
    never use Pub/Sub, and the import costs each of them ~14 MB."""
    from google.cloud import pubsub_v1

    return pubsub_v1


class ServiceUnavailable(RuntimeError):
    """Pub/Sub or Bigtable could not be reached."""


def _admin_retry(timeout: float) -> gretry.Retry:
    """Retry transient errors for at most `timeout` seconds in all. Without it the client's default
    retry keeps trying an unreachable host for minutes, whatever per-call timeout is given."""
    transient = gretry.if_exception_type(gexc.ServiceUnavailable, gexc.Unknown, gexc.Aborted, gexc.DeadlineExceeded)
    return gretry.Retry(predicate=transient, initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout)


def _why(exc: Exception, timeout: float) -> str:
    if isinstance(exc, (gexc.RetryError, gexc.DeadlineExceeded)):
        return f"no answer within {timeout:g} s"
    return exc.__class__.__name__


def apply_emulator_env(cfg: Config) -> dict[str, str]:
    """Fill in the emulator variables from the config unless already set; return the ones in force."""
    for var, value in (
        ("PUBSUB_EMULATOR_HOST", cfg.pubsub_emulator_host),
        ("BIGTABLE_EMULATOR_HOST", cfg.bigtable_emulator_host),
    ):
        if value and not os.environ.get(var):
            os.environ[var] = value
    return {var: os.environ[var] for var in ("PUBSUB_EMULATOR_HOST", "BIGTABLE_EMULATOR_HOST") if os.environ.get(var)}


def describe_target(cfg: Config) -> str:
    env = apply_emulator_env(cfg)
    pubsub = env.get("PUBSUB_EMULATOR_HOST", "Google Cloud")
    bigtable_target = env.get("BIGTABLE_EMULATOR_HOST", "Google Cloud")
    return f"Pub/Sub at {pubsub}, Bigtable at {bigtable_target}"


def topic_path(cfg: Config) -> str:
    return f"projects/{cfg.project_id}/topics/{cfg.topic_id}"


def subscription_path(cfg: Config) -> str:
    return f"projects/{cfg.project_id}/subscriptions/{cfg.subscription_id}"


def publisher_client(cfg: Config, **kwargs: Any) -> pubsub_v1.PublisherClient:
    apply_emulator_env(cfg)
    return _pubsub().PublisherClient(**kwargs)


# What the library sets on its channel to Google Cloud; on the emulator's plain channel it sets
# nothing, and a pull answer over gRPC's default 4 MB (20 messages of 200 KB) fails, leaving its
# messages leased to no one until their ack deadline.
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def subscriber_client(cfg: Config) -> pubsub_v1.SubscriberClient:
    apply_emulator_env(cfg)
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return _pubsub().SubscriberClient()
    channel = grpc.insecure_channel(host, options=_UNLIMITED)
    return _pubsub().SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def ensure_topic(cfg: Config, timeout: float = 10.0) -> str:
    """Create the topic when missing. Raises ServiceUnavailable when Pub/Sub cannot be reached."""
    apply_emulator_env(cfg)
    path = topic_path(cfg)
    with _pubsub().PublisherClient() as client:
        try:
            client.get_topic(topic=path, retry=_admin_retry(timeout), timeout=timeout)
        except gexc.NotFound:
            with contextlib.suppress(gexc.AlreadyExists):
                client.create_topic(name=path, retry=_admin_retry(timeout), timeout=timeout)
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
            raise ServiceUnavailable(f"cannot reach Pub/Sub ({describe_target(cfg)}): {_why(exc, timeout)}") from None
    return path


def ensure_subscription(cfg: Config, ack_deadline_seconds: int = 60, timeout: float = 10.0) -> str:
    """Create the topic and subscription when missing."""
    ensure_topic(cfg, timeout)
    path = subscription_path(cfg)
    client = subscriber_client(cfg)
    try:
        client.get_subscription(subscription=path, retry=_admin_retry(timeout), timeout=timeout)
    except gexc.NotFound:
        with contextlib.suppress(gexc.AlreadyExists):
            client.create_subscription(
                name=path,
                topic=topic_path(cfg),
                ack_deadline_seconds=ack_deadline_seconds,
                retry=_admin_retry(timeout),
                timeout=timeout,
            )
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
        raise ServiceUnavailable(f"cannot reach Pub/Sub ({describe_target(cfg)}): {_why(exc, timeout)}") from None
    finally:
        client.close()
    return path


def bigtable_client(cfg: Config, admin: bool = False) -> bigtable.Client:
    apply_emulator_env(cfg)
    return bigtable.Client(project=cfg.project_id, admin=admin)


BIGTABLE_ATTEMPT_SECONDS = 20.0  # one attempt of a read, within bigtable_timeout_seconds


def bigtable_table(cfg: Config, client: bigtable.Client | None = None) -> Any:
    """The data handle of the configured table (no admin calls). Its reads give up after
    `bigtable_timeout_seconds` (an outage the caller reports) rather than the library's ten minutes."""
    client = client or bigtable_client(cfg)
    table = client.instance(cfg.instance_id).table(cfg.table_id)
    seconds = cfg.bigtable_timeout_seconds
    bigtable_private.bound_read_timeouts(table, seconds, min(BIGTABLE_ATTEMPT_SECONDS, seconds))
    return table


def ensure_table(cfg: Config, timeout: float = 15.0) -> Any:
    """Create the table and its column families when missing; return the table handle."""
    client = bigtable_client(cfg, admin=True)
    table = client.instance(cfg.instance_id).table(cfg.table_id)
    one_version = column_family.MaxVersionsGCRule(1)
    try:
        if not table.exists():
            with contextlib.suppress(gexc.AlreadyExists):
                table.create(column_families={name: one_version for name in store.FAMILIES})
        else:
            missing = set(store.FAMILIES) - set(table.list_column_families())
            for name in sorted(missing):
                table.column_family(name, one_version).create()
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
        raise ServiceUnavailable(f"cannot reach Bigtable ({describe_target(cfg)}): {exc.__class__.__name__}") from None
    return table
