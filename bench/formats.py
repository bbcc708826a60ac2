"""What reading an event costs in each of CometChat's formats: ``accept`` per body, current against legacy.

``accept`` is the pure part of intake (decode, parse, skew check, content scrub), the same for
``/hook`` and ``presence import``. The two formats are timed in the same run, interleaved, best
of several rounds, so the ratio means something on a noisy machine::

    .venv/bin/python -m bench.formats
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from presence.intake.accept import accept
from tests.support import payloads

ROUNDS = 5
BODIES_PER_ROUND = 20_000


def pairs(now_ms: int) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The same event in the legacy and in the current format, by kind."""
    seconds = now_ms // 1000
    return {
        "connection": (
            payloads.connection("u1", "connected", now_ms, payloads.device("s1", connected_at=now_ms - 1000)),
            payloads.current_connection("u1", "connected", now_ms, connected_at=now_ms - 1000),
        ),
        "message": (
            payloads.message(57, "a_user_b", "a", sent_at=seconds),
            payloads.message_sent(57, "a_user_b", "a", sent_at=seconds),
        ),
        "receipt": (
            payloads.receipt("read", 57, reader="b", message_sender="a", at=seconds, receiver="a"),
            payloads.current_receipt("read", 57, reader="b", message_sender="a", at=seconds, receiver="a"),
        ),
    }


def microseconds_per_body(raw: bytes, received_at: datetime) -> float:
    started = time.perf_counter()
    for _ in range(BODIES_PER_ROUND):
        accept(raw, received_at=received_at)
    return (time.perf_counter() - started) / BODIES_PER_ROUND * 1e6


def main() -> None:
    received_at = datetime.now(UTC)
    now_ms = int(received_at.timestamp() * 1000) - 60_000
    print("| event | legacy, µs | current, µs | current / legacy |")
    print("| --- | --- | --- | --- |")
    for kind, (legacy, current) in pairs(now_ms).items():
        raws = (orjson.dumps(legacy), orjson.dumps(current))
        best = [float("inf"), float("inf")]
        for _ in range(ROUNDS):
            for index, raw in enumerate(raws):
                best[index] = min(best[index], microseconds_per_body(raw, received_at))
        print(f"| {kind} | {best[0]:.1f} | {best[1]:.1f} | {best[1] / best[0]:.2f}x |")


if __name__ == "__main__":
    main()
