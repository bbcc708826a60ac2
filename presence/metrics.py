"""Prometheus metrics, one registry per application (never the process-global one).

Events by trigger and outcome, intake latency, commit batch sizes and
durations, database errors, retention deletions, forwarding's deliveries and failures, users
online and forwarding's lag (both read from the database when scraped), open change streams, and
reconciliation's passes, corrections and CometChat's errors.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from presence.core.parse import KNOWN_TRIGGERS

#: Any other trigger is counted as "other", so that a sender cannot grow the label set.
OTHER_TRIGGER: Final = "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._event_children: dict[tuple[str, str], Counter] = {}
        #: Webhooks answered since start, whatever their outcome (for the shutdown line).
        self.webhooks = 0
        self.events = Counter(
            "presence_events",
            "Webhook events received, by trigger and outcome"
            " (accepted, ignored, rejected, unauthorized, unavailable, error).",
            ["trigger", "outcome"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "presence_intake_seconds",
            "Time from a webhook's arrival to its answer, commit included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.commit_batch_size = Histogram(
            "presence_commit_batch_size",
            "Events committed together by one group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "presence_commit_seconds",
            "Duration of one group-commit transaction.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.database_errors = Counter(
            "presence_database_errors",
            "Database operations that failed, by operation (commit, query, retention, forward).",
            ["operation"],
            registry=self.registry,
        )
        self.inline_read_fallbacks = Counter(
            "presence_inline_read_fallbacks",
            "SQLite lookups that left the event loop for the worker thread, by reason (over_budget, error).",
            ["reason"],
            registry=self.registry,
        )
        self.retention_deleted = Counter(
            "presence_retention_deleted_rows",
            "Rows deleted by retention, by table.",
            ["table"],
            registry=self.registry,
        )
        self.changes = Counter(
            "presence_changes",
            "Changes recorded (contract §9), by type (presence, receipt, group_receipt), once committed.",
            ["type"],
            registry=self.registry,
        )
        self.forward_delivered = Counter(
            "presence_forward_delivered",
            "Changes this replica forwarded to the app and the app acknowledged with a 2xx.",
            registry=self.registry,
        )
        self.forward_failures = Counter(
            "presence_forward_failures",
            "POSTs of changes to the app that failed, by status: the HTTP status, timeout or error.",
            ["status"],
            registry=self.registry,
        )
        self.forward_lag = Gauge(
            "presence_forward_lag_seconds",
            "Age of the oldest change not yet forwarded to the app, 0 when none (read when scraped).",
            registry=self.registry,
        )
        self.users_online = Gauge(
            "presence_users_online",
            "Users who answer online: their newest status, under PRESENCE_CONNECTION_TTL if set (read when scraped).",
            registry=self.registry,
        )
        self.stream_subscribers = Gauge(
            "presence_stream_subscribers",
            "Open GET /changes/stream streams.",
            registry=self.registry,
        )
        self.stream_disconnects = Counter(
            "presence_stream_disconnects",
            "Streams the service ended, by reason (slow: the client read more slowly than changes came;"
            " expired: retention pruned past it; error: the database failed mid-stream).",
            ["reason"],
            registry=self.registry,
        )

        self.reconcile_runs = Counter(
            "presence_reconcile_runs",
            "Reconciliation passes (contract §10), by outcome (completed; cometchat_failed, database_failed,"
            " timed_out: cut short, nothing changed for the users not reached).",
            ["outcome"],
            registry=self.registry,
        )
        self.reconcile_corrections = Counter(
            "presence_reconcile_corrections",
            "Users a reconciliation pass corrected, by direction (offline, online).",
            ["direction"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "presence_reconcile_seconds",
            "Duration of one reconciliation pass, whatever its outcome.",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
            registry=self.registry,
        )
        self.cometchat_errors = Counter(
            "presence_cometchat_errors",
            "Requests to CometChat's REST API that failed, retried or not, by status: the HTTP status,"
            " timeout, error (no answer) or malformed.",
            ["status"],
            registry=self.registry,
        )

    def count_event(self, trigger: str | None, outcome: str) -> None:
        self.webhooks += 1
        label = trigger if trigger in KNOWN_TRIGGERS else OTHER_TRIGGER
        # labels() looks the child up under a lock on every call; the set of children is small and fixed.
        child = self._event_children.get((label, outcome))
        if child is None:
            child = self._event_children[(label, outcome)] = self.events.labels(trigger=label, outcome=outcome)
        child.inc()
