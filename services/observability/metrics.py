"""Prometheus metrics, defined once; ``/metrics`` exposes them.

Every process keeps its own registry; a scraper collects each node (they
are labelled with ``node`` by the scrape configuration, not here).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

registry = CollectorRegistry()


class CountsByLabel:
    """A labelled counter kept as plain integers: hot paths add, scrapes read.

    prometheus-client's labelled counters look the child up, validate it and
    take a lock on every increment, several microseconds on a path that every
    socket event takes. The label values here come from fixed sets (event
    names, outcome codes), so the dict stays small.
    """

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.counts: dict[str, int] = {}
        registry.register(self)

    def inc(self, value: str) -> None:
        self.counts[value] = self.counts.get(value, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in list(self.counts.items()):
            family.add_metric([value], count)
        yield family


class Durations:
    """A histogram kept as plain integers, for the same reason as ``CountsByLabel``.

    prometheus-client's ``Histogram.time()`` builds a timer object and takes a
    lock per observation; every emit is observed.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.buckets = name, documentation, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        registry.register(self)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, running = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative,
                                    sum_value=self.total)


live_connections = Gauge("hub_live_connections", "Sockets connected to this process",
                         registry=registry)
connects = Counter("hub_connects_total", "Accepted socket connections", registry=registry)
connect_refusals = Counter("hub_connect_refusals_total", "Refused socket connections",
                           ["reason"], registry=registry)
disconnects = Counter("hub_disconnects_total", "Socket disconnections", registry=registry)
events_in = CountsByLabel("hub_events_in", "Client events received", "event")
events_out = CountsByLabel("hub_events_out", "Events emitted (per emit call, not per socket)",
                           "event")
acks = CountsByLabel("hub_acks", "Event outcomes", "outcome")
rate_limited = Counter("hub_rate_limited_events_total", "Events refused by rate limits",
                       registry=registry)
emit_seconds = Durations("hub_emit_seconds", "Time spent handing one emit to Socket.IO",
                         buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0))
recipients_sent = Counter("hub_recipients_processed_total", "Recipients sent or refused",
                          ["outcome"], registry=registry)
receipts_applied = Counter("hub_receipts_applied_total", "Delivery receipts that changed state",
                           registry=registry)
inbound_sms = Counter("hub_inbound_sms_total", "SMS received from people, every provider",
                      registry=registry)
analytics_rounds = Counter("hub_analytics_rounds_total", "Analytics scheduler rounds",
                           registry=registry)
analytics_round_cpu = Counter(
    "hub_analytics_round_cpu_seconds_total",
    "CPU time of this process inside analytics rounds, by part: computing the figures "
    "(compute) and handing the updates to Socket.IO (emit); the sockets' own writes come "
    "after, in their writers", ["part"], registry=registry)
analytics_figures = Counter("hub_analytics_figures_computed_total",
                            "Figure sets computed for subscribers (snapshots and rounds)",
                            registry=registry)
queue_received = CountsByLabel(
    "hub_queue_messages_received", "Messages this process read from the message queue, by "
    "channel: the shared one, or a room's", "channel")
queue_decoded = CountsByLabel(
    "hub_queue_messages_decoded", "Queue messages this process decoded, by channel", "channel")
queue_dropped = CountsByLabel(
    "hub_queue_messages_dropped", "Queue messages that addressed no socket of this process, "
    "by channel (a room's are dropped before decoding when the room has gone)", "channel")
queue_subscriptions = Gauge("hub_queue_room_subscriptions",
                            "Room channels this process is subscribed to", registry=registry)
dispatch_backlog = Gauge("hub_dispatch_backlog", "Recipients waiting to be sent (all nodes)",
                         registry=registry)


def render() -> bytes:
    return generate_latest(registry)
