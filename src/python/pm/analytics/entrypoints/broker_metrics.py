"""Prometheus figures of the broker view: consumer lag per partition and the parked messages.

Lag needs the broker (a second or more when it is slow), so a background thread samples it every
`interval` seconds and a scrape reads the last sample; the parked count is one indexed SQL count per
scrape, as the patient service's outbox figures are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pm.analytics.domain.broker import BrokerUnreachable, PartitionLag
from pm.analytics.entrypoints.broker import BrokerDesk
from pm.common.threads import ThreadWorker
from pm.common.web import Metrics

log = logging.getLogger(__name__)


class LagSampler(ThreadWorker):
    def __init__(self, desk: BrokerDesk, interval: float = 15.0) -> None:
        self.desk = desk
        self.interval = interval
        self.lags: list[PartitionLag] = []
        self.reachable = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        try:
            self.lags = self.desk.view.group_lag(self.desk.group, self.desk.topic)
            self.reachable = True
        except BrokerUnreachable as exc:
            self.lags, self.reachable = [], False
            log.debug("lag sample failed", extra={"error": str(exc)})

    def thread_name(self) -> str:
        return "analytics-lag-sampler"

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a sampler thread must never die silently
                log.exception("lag sample failed")
            self._stop.wait(self.interval)


class BrokerCollector(Collector):
    def __init__(self, desk: BrokerDesk, sampler: LagSampler) -> None:
        self.desk = desk
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "pm_consumer_lag",
            "Messages on the partition not yet committed by the consumer group (last sample)",
            labels=["group", "topic", "partition"],
        )
        for p in self.sampler.lags:
            lag.add_metric([self.desk.group, self.desk.topic, str(p.partition)], p.lag)
        yield lag
        yield GaugeMetricFamily(
            "pm_broker_reachable",
            "1 when the last lag sample reached the broker",
            value=1.0 if self.sampler.reachable else 0.0,
        )
        try:
            parked = float(self.desk.dead_letters.count())
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is away
            parked = float("nan")
        yield GaugeMetricFamily("pm_dead_letters_parked", "Messages parked as dead letters", value=parked)


def register_broker_metrics(metrics: Metrics, desk: BrokerDesk, interval: float = 15.0) -> LagSampler:
    sampler = LagSampler(desk, interval)
    metrics.registry.register(BrokerCollector(desk, sampler))
    return sampler
