"""Analytics settings: read from the environment here and nowhere else."""

from __future__ import annotations

from pm.common.config import Env
from pm.common.settings import TokenCheckingSettings, kafka_bootstrap_servers
from pm.common.tls import ClientTls, client_tls

CONSUMER_GROUP = "analytics-service"


class Settings(TokenCheckingSettings, service="analytics", port=4002):
    kafka_bootstrap_servers: str
    patient_topic: str
    dead_letter_topic: str
    consumer_group: str
    event_retention_seconds: float = 7 * 86400.0
    outbox_retention_seconds: float = 7 * 86400.0
    kafka_tls: ClientTls | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            **cls.shared(env),
            kafka_bootstrap_servers=kafka_bootstrap_servers(env),
            patient_topic=env.text("PM_PATIENT_TOPIC", "patient"),
            dead_letter_topic=env.text("PM_PATIENT_DLQ_TOPIC", "patient.dlq"),
            consumer_group=env.text("PM_ANALYTICS_CONSUMER_GROUP", CONSUMER_GROUP),
            event_retention_seconds=env.duration("PM_ANALYTICS_EVENT_RETENTION", "7d", minimum=1.0),
            # Event ids are kept as long as the patient outbox may publish the event again.
            outbox_retention_seconds=env.duration("PM_OUTBOX_RETENTION", "7d", minimum=1.0),
            kafka_tls=client_tls(env, "PM_KAFKA_TLS"),
        )
