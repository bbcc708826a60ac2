"""The benchmark's webhook traffic: CometChat bodies for many users, seeded, with duplicates and disorder.

The same seed gives the same bytes, so two runs (or two machines) post the same
events. The stream is built in time order, then delivered the way CometChat
delivers: about 70% connection events (each with its ``connections`` snapshot),
about 30% ``after_message`` and delivery/read receipts, some events arriving
late (disorder) and about 10% of the deliveries repeating an earlier one
(retries).

    .venv/bin/python bench/workload.py --out /tmp/bodies.jsonl

writes one JSON body a line, the file ``bench/load.lua`` posts round-robin.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

Body = dict[str, Any]

DEFAULT_USERS = 12_000
DEFAULT_EVENTS = 60_000
DEFAULT_SEED = 20261121
APP_ID = "167*****1529"
#: 2026-11-18T11:06:40Z, in milliseconds: when the simulated traffic starts.
START_MS = 1_795_000_000_000

CONNECTION_SHARE = 0.70
DUPLICATE_SHARE = 0.10
#: Share of deliveries held back, and how far (in deliveries, on average) they slip.
LATE_SHARE = 0.10
LATE_MEAN_SLIP = 60.0
#: How far (in deliveries, at most) a retry comes after the first delivery.
RETRY_MAX_SLIP = 3_000
MAX_SESSIONS = 3
GROUPS = 300
GROUP_SIZE = 8
PLATFORMS = ("web", "android", "ios")
PLATFORM_WEIGHTS = (0.4, 0.35, 0.25)


@dataclass(frozen=True, slots=True)
class Device:
    session_id: str
    device_id: str
    platform: str
    connected_at: int

    def json(self, at_as_string: bool) -> Body:
        return {
            "connected_at": str(self.connected_at) if at_as_string else self.connected_at,
            "cometchat_device_id": self.device_id,
            "session_id": self.session_id,
            "platform": self.platform,
        }


@dataclass(slots=True)
class Summary:
    """What the generated traffic holds, for the report."""

    deliveries: int = 0
    unique_events: int = 0
    duplicates: int = 0
    late: int = 0
    by_trigger: Counter[str] = field(default_factory=Counter)
    users: int = 0
    messages: int = 0

    def describe(self) -> str:
        triggers = ", ".join(f"{name} {count}" for name, count in sorted(self.by_trigger.items()))
        connection = self.by_trigger["after_connection_status_changed"]
        return (
            f"{self.deliveries} deliveries of {self.unique_events} distinct events over {self.users} users "
            f"and {self.messages} messages: {connection / self.deliveries:.0%} connection events; "
            f"{self.duplicates / self.deliveries:.1%} repeats; {self.late / self.deliveries:.1%} arrive after "
            f"a later event ({triggers})"
        )


@dataclass(frozen=True, slots=True)
class Workload:
    bodies: list[bytes]
    #: Every uid a connection event names.
    uids: list[str]
    #: Every message id an ``after_message`` or a receipt names.
    message_ids: list[int]
    summary: Summary

    def write(self, path: Path) -> None:
        with path.open("wb") as out:
            for body in self.bodies:
                out.write(body)
                out.write(b"\n")


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a message went: what its receipts name."""

    message_id: int
    sender: str
    receiver: str
    kind: str  # receiverType: "user" or "group"


@dataclass(order=True, slots=True)
class _Receipt:
    """A receipt due at ``due_ms``, waiting for its turn in the stream."""

    due_ms: int
    serial: int
    body: Body = field(compare=False)


class _Generator:
    def __init__(self, users: int, rng: random.Random) -> None:
        self.rng = rng
        self.uids = [f"user-{n:06d}" for n in range(users)]
        self.sessions: dict[str, dict[str, Device]] = {}
        self.devices: dict[str, list[tuple[str, str]]] = {}
        self.groups = [rng.sample(self.uids, GROUP_SIZE) for _ in range(GROUPS)]
        self.clock_ms = START_MS
        self.next_message_id = 100_000
        self.pending: list[_Receipt] = []
        self.serial = itertools.count()
        self.named_uids: set[str] = set()
        self.message_ids: list[int] = []

    def tick(self) -> None:
        # Several events often share a millisecond: the tie rules get exercised.
        self.clock_ms += int(self.rng.expovariate(1 / 4.0))

    def event(self) -> Body:
        self.tick()
        if self.rng.random() < CONNECTION_SHARE:
            return self.connection()
        # A receipt once it is due, else a new message: each message brings one to six receipts.
        if self.pending and self.pending[0].due_ms <= self.clock_ms:
            return heapq.heappop(self.pending).body
        return self.message()

    def device_of(self, uid: str) -> tuple[str, str]:
        owned = self.devices.setdefault(uid, [])
        if len(owned) < MAX_SESSIONS and (not owned or self.rng.random() < 0.2):
            platform = self.rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0]
            owned.append((f"{self.rng.getrandbits(64):016x}", platform))
        return self.rng.choice(owned)

    def connection(self) -> Body:
        uid = self.rng.choice(self.uids)
        self.named_uids.add(uid)
        live = self.sessions.setdefault(uid, {})
        at = self.clock_ms
        if not live or (len(live) < MAX_SESSIONS and self.rng.random() < 0.5):
            device_id, platform = self.device_of(uid)
            session = Device(f"{self.rng.getrandbits(80):020x}", device_id, platform, at - self.rng.randrange(0, 5))
            live[session.session_id] = session
            kind = "connected"
        else:
            session = live.pop(self.rng.choice(sorted(live)))
            kind = "disconnected"
        # CometChat sends times as numbers, sometimes as numeric strings.
        as_string = self.rng.random() < 0.05
        stamp: int | str = str(at) if as_string else at
        return {
            "trigger": "after_connection_status_changed",
            "appId": APP_ID,
            "origin": {"platform": "WEBSOCKET"},
            "chatAPIVersion": "3.0",
            "region": "us",
            "webhook": "presence",
            "data": {
                "user": {
                    "uid": uid,
                    "status": "online" if live else "offline",
                    "status_updated": True,
                    "status_updated_at": stamp,
                },
                "event": {"type": kind, "at": stamp, "event_for": session.json(as_string)},
                "connections": [live[s].json(as_string) for s in sorted(live, key=lambda s: live[s].connected_at)],
            },
        }

    def message(self) -> Body:
        message_id = self.next_message_id
        self.next_message_id += 1
        self.message_ids.append(message_id)
        sent_at = self.clock_ms // 1000
        if self.rng.random() < 0.85:
            sender, receiver = self.rng.sample(self.uids, 2)
            low, high = sorted((sender, receiver))
            conversation, receiver_type, readers = f"{low}_user_{high}", "user", [receiver]
        else:
            group = self.rng.randrange(GROUPS)
            members = self.groups[group]
            sender = self.rng.choice(members)
            receiver = f"group-{group:03d}"
            conversation, receiver_type = f"group_{receiver}", "group"
            readers = self.rng.sample([m for m in members if m != sender], self.rng.randint(1, 3))
        for reader in readers:
            delivered = sent_at + self.rng.randint(0, 3)
            route = _Route(message_id, sender, receiver, receiver_type)
            self.schedule(at_s=delivered, kind="delivered", reader=reader, route=route)
            if self.rng.random() < 0.6:
                read = delivered + self.rng.randint(0, 30)
                self.schedule(at_s=read, kind="read", reader=reader, route=route)
        return {
            "trigger": "after_message",
            "data": {
                "id": str(message_id),
                "conversationId": conversation,
                "sender": sender,
                "receiverType": receiver_type,
                "receiver": receiver,
                "category": "message",
                "type": "text",
                "data": {
                    "text": "See you at the standup in five minutes",
                    "entities": {
                        "sender": {
                            "entity": {"uid": sender, "name": "Sender", "status": "online", "role": "default"},
                            "entityType": "user",
                        },
                    },
                },
                "sentAt": sent_at,
                "updatedAt": sent_at,
            },
            "appId": APP_ID,
            "webhook": "send-message",
        }

    def schedule(self, *, at_s: int, kind: str, reader: str, route: _Route) -> None:
        """Queue ``reader``'s receipt of the message ``route`` describes, due at ``at_s`` (seconds)."""
        message_id, sender, receiver, receiver_type = route.message_id, route.sender, route.receiver, route.kind
        body = {
            "trigger": "message_delivery_receipt" if kind == "delivered" else "message_read_receipt",
            "appId": APP_ID,
            "origin": {"platform": "WEBSOCKET"},
            "webhook": "receipts",
            "data": {
                "messageId": str(message_id),
                "receiptType": kind,
                ("deliveredAt" if kind == "delivered" else "readAt"): at_s,
                "messageSender": sender,
                "receiptSender": reader,
                # For a one-to-one message the receipt goes back to the sender; for a group, to the group.
                "receiptReceiver": sender if receiver_type == "user" else receiver,
                "receiverType": receiver_type,
            },
        }
        heapq.heappush(self.pending, _Receipt(at_s * 1000, next(self.serial), body))


def generate(*, users: int = DEFAULT_USERS, events: int = DEFAULT_EVENTS, seed: int = DEFAULT_SEED) -> Workload:
    """``events`` deliveries (repeats included) over ``users`` users, the same for the same arguments."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    generator = _Generator(users, rng)
    duplicates = round(events * DUPLICATE_SHARE)
    unique = [generator.event() for _ in range(events - duplicates)]
    # Delivery order: most events in time order, some held back a while, retries much later.
    slots: list[tuple[float, int]] = []
    for index in range(len(unique)):
        slip = rng.expovariate(1 / LATE_MEAN_SLIP) if rng.random() < LATE_SHARE else 0.0
        slots.append((index + slip, index))
    for index in rng.sample(range(len(unique)), duplicates):
        slots.append((index + rng.uniform(1, RETRY_MAX_SLIP), index))
    slots.sort()
    summary = Summary(deliveries=len(slots), unique_events=len(unique), duplicates=duplicates)
    summary.users = len(generator.named_uids)
    summary.messages = len(generator.message_ids)
    encoded = [orjson.dumps(body) for body in unique]
    bodies: list[bytes] = []
    newest = -1
    for _, index in slots:
        if index < newest:
            summary.late += 1
        newest = max(newest, index)
        summary.by_trigger[str(unique[index]["trigger"])] += 1
        bodies.append(encoded[index])
    return Workload(
        bodies=bodies,
        uids=sorted(generator.named_uids),
        message_ids=generator.message_ids,
        summary=summary,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="write the benchmark's webhook bodies, one JSON object a line")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    workload = generate(users=args.users, events=args.events, seed=args.seed)
    workload.write(args.out)
    print(workload.summary.describe())


if __name__ == "__main__":
    main()
