"""Prometheus metrics, defined once; ``/metrics`` exposes them.

Every process keeps its own registry; a scraper collects each node (they
are labelled with ``node`` by the scrape configuration, not here).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

registry = CollectorRegistry()

live_connections = Gauge("hub_live_connections", "Sockets connected to this process",
                         registry=registry)
connects = Counter("hub_connects_total", "Accepted socket connections", registry=registry)
connect_refusals = Counter("hub_connect_refusals_total", "Refused socket connections",
                           ["reason"], registry=registry)
disconnects = Counter("hub_disconnects_total", "Socket disconnections", registry=registry)
events_in = Counter("hub_events_in_total", "Client events received", ["event"],
                    registry=registry)
events_out = Counter("hub_events_out_total", "Events emitted (per emit call, not per socket)",
                     ["event"], registry=registry)
acks = Counter("hub_acks_total", "Event outcomes", ["outcome"], registry=registry)
rate_limited = Counter("hub_rate_limited_events_total", "Events refused by rate limits",
                       registry=registry)
emit_seconds = Histogram("hub_emit_seconds", "Time spent handing one emit to Socket.IO",
                         buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
                         registry=registry)
recipients_sent = Counter("hub_recipients_processed_total", "Recipients sent or refused",
                          ["outcome"], registry=registry)
receipts_applied = Counter("hub_receipts_applied_total", "Delivery receipts that changed state",
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
dispatch_backlog = Gauge("hub_dispatch_backlog", "Recipients waiting to be sent (all nodes)",
                         registry=registry)


def render() -> bytes:
    return generate_latest(registry)
