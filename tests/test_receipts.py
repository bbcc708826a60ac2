"""Contract §4, clause by clause: ``GET /messages/{id}/receipts`` after real message and receipt webhooks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api
from tests.support.oracle import NOTHING_CURRENT
from tests.support.payloads import Body, message, receipt
from tests.support.state import state_tables

#: A one-to-one conversation: bob sends, alice reads.
SENDER = "bob"
READER = "alice"
DIRECT = "alice_user_bob"
#: A group conversation.
GUID = "team"
GROUP = "group_team"
#: 2025-11-21T10:15:30Z, in seconds as receipts carry it; ``s(k)`` is ``k`` seconds later.
S0 = 1_763_720_130


def s(k: int) -> int:
    return S0 + k


def iso(k: int) -> str:
    """``s(k)`` as the API shows it."""
    return f"2025-11-21T10:{15 + (30 + k) // 60:02d}:{(30 + k) % 60:02d}.000Z"


def direct(kind: str, message_id: int | str, at: int, *, reader: str = READER, sender: str = SENDER) -> Body:
    """A one-to-one receipt: ``reader`` marks ``sender``'s message."""
    return receipt(kind, message_id, reader=reader, message_sender=sender, at=at, receiver=sender)


def group(kind: str, message_id: int | str, at: int, *, reader: str, sender: str | None) -> Body:
    return receipt(kind, message_id, reader=reader, message_sender=sender, at=at, receiver=GUID, receiver_type="group")


def sent(message_id: int | str, *, conversation: str = DIRECT, sender: str = SENDER) -> Body:
    if conversation.startswith("group_"):
        return message(message_id, conversation, sender, receiver=GUID, receiver_type="group")
    return message(message_id, conversation, sender, receiver=READER)


def row(uid: str, delivered: str | None, read: str | None) -> dict[str, Any]:
    return {"uid": uid, "delivered_at": delivered, "read_at": read}


def answer(
    message_id: str, rows: list[dict[str, Any]], *, conversation: str = DIRECT, sender: str | None = SENDER
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "conversation_id": conversation,
        "sender": sender,
        "receipts": rows,
        "delivered_count": sum(1 for r in rows if r["delivered_at"] is not None),
        "read_count": sum(1 for r in rows if r["read_at"] is not None),
        **NOTHING_CURRENT,
    }


#: What §11 adds to a group message's receipts (members, unread_by): tests/test_conversations.py reads them.
SECTION_11_KEYS = ("members_count", "unread_by", "unread_by_truncated")


async def receipts_of(api: Api, message_id: str) -> dict[str, Any] | None:
    """The receipts answer as §4 gives it: without what §11 adds to a group message's."""
    found = await api.receipts(message_id)
    if found is not None and found["conversation_id"].startswith("group_"):
        assert set(SECTION_11_KEYS) <= set(found)
        found = {key: value for key, value in found.items() if key not in SECTION_11_KEYS}
    return found


async def post_all(api: Api, bodies: list[Body]) -> None:
    for body in bodies:
        assert await api.hook(body) == {"status": "accepted"}


async def test_a_read_receipt_is_a_watermark(api: Api) -> None:
    """§4 watermark: a read receipt for 10 marks 9 and 10 read by that reader, not 11."""
    await post_all(api, [sent(9), sent(10), sent(11), direct("read", 10, s(1))])

    assert await receipts_of(api, "9") == answer("9", [row(READER, iso(1), iso(1))])
    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(1), iso(1))])
    assert await receipts_of(api, "11") == answer("11", [])


async def test_a_delivery_receipt_is_a_watermark(api: Api) -> None:
    """§4 watermark: a delivery receipt for 10 marks 9 and 10 delivered (not read) by that reader, not 11."""
    await post_all(api, [sent(9), sent(10), sent(11), direct("delivered", 10, s(1))])

    assert await receipts_of(api, "9") == answer("9", [row(READER, iso(1), None)])
    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(1), None)])
    assert await receipts_of(api, "11") == answer("11", [])


async def test_message_ids_compare_as_integers(api: Api) -> None:
    """§4: ids compare as integers: ``"9"`` < ``"10"`` and ``"99"`` < ``"100"``."""
    await post_all(api, [sent(9), sent(10), sent(99), sent(100), direct("read", 10, s(1)), direct("read", "99", s(2))])

    assert await receipts_of(api, "9") == answer("9", [row(READER, iso(1), iso(1))])
    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(1), iso(1))])
    assert await receipts_of(api, "99") == answer("99", [row(READER, iso(2), iso(2))])
    assert await receipts_of(api, "100") == answer("100", [])


async def test_reading_implies_delivery(api: Api) -> None:
    """§4: ``delivered_at`` is the earliest of the reader's delivery and read receipts at or above the message."""
    await post_all(
        api,
        [
            sent(10),
            sent(11),
            sent(12),
            direct("delivered", 10, s(1)),
            direct("read", 12, s(3)),
            direct("delivered", 11, s(5)),
        ],
    )

    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(1), iso(3))])
    assert await receipts_of(api, "11") == answer("11", [row(READER, iso(3), iso(3))])
    assert await receipts_of(api, "12") == answer("12", [row(READER, iso(3), iso(3))])


async def test_a_later_receipt_at_a_higher_id_does_not_move_an_earlier_time(api: Api) -> None:
    """§4: times only move earlier; a later watermark above the message keeps the earlier time."""
    await post_all(
        api,
        [
            sent(10),
            sent(11),
            direct("delivered", 10, s(1)),
            direct("read", 10, s(2)),
            direct("delivered", 11, s(8)),
            direct("read", 11, s(9)),
        ],
    )

    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(1), iso(2))])
    assert await receipts_of(api, "11") == answer("11", [row(READER, iso(8), iso(9))])


async def test_an_earlier_receipt_arriving_late_moves_the_time_earlier(api: Api) -> None:
    """§4: times only move earlier; a receipt with an earlier time, delivered last, wins."""
    await post_all(api, [sent(10), direct("read", 10, s(9)), direct("delivered", 10, s(7))])
    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(7), iso(9))])

    await post_all(api, [direct("read", 10, s(4)), direct("delivered", 10, s(2)), direct("read", 10, s(20))])

    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(2), iso(4))])


async def test_a_repeated_receipt_changes_nothing(api: Api, database_url: str) -> None:
    """§2/§4: a repeated receipt, late or not, leaves the answer and the state as they were."""
    first = direct("delivered", 10, s(1))
    second = direct("read", 10, s(2))
    third = direct("read", 11, s(3))
    await post_all(api, [sent(10), sent(11), first, second, third])
    before = await receipts_of(api, "10")
    state = await state_tables(database_url)
    assert before == answer("10", [row(READER, iso(1), iso(2))])

    await post_all(api, [third, second, first, first])

    assert await receipts_of(api, "10") == before
    assert await state_tables(database_url) == state


async def test_the_conversation_of_a_message_comes_from_its_after_message(api: Api) -> None:
    """§4: a message's conversation is ``data.conversationId`` of its ``after_message``."""
    await post_all(
        api,
        [
            direct("read", 10, s(2), reader="zoe", sender="mia"),  # the same id named in mia_user_zoe, first
            sent(10, conversation=GROUP, sender="mia"),
            group("read", 10, s(1), reader="zoe", sender="mia"),
        ],
    )

    assert await receipts_of(api, "10") == answer("10", [row("zoe", iso(1), iso(1))], conversation=GROUP, sender="mia")


@pytest.mark.parametrize(("reader", "sender"), [("amy", "zed"), ("zed", "amy")])
async def test_a_receipt_names_a_one_to_one_conversation_by_the_sorted_uids(api: Api, reader: str, sender: str) -> None:
    """§4: from a ``user`` receipt, the conversation is the two uids sorted and joined by ``_user_``."""
    await post_all(api, [direct("delivered", 31, s(1), reader=reader, sender=sender)])

    assert await receipts_of(api, "31") == answer(
        "31", [row(reader, iso(1), None)], conversation="amy_user_zed", sender=sender
    )


async def test_a_group_receipt_names_the_conversation_group_guid(api: Api) -> None:
    """§4: from a ``group`` receipt, the conversation is ``group_`` + ``receiptReceiver``."""
    await post_all(api, [group("read", 40, s(1), reader="zoe", sender="mia")])

    assert await receipts_of(api, "40") == answer("40", [row("zoe", iso(1), iso(1))], conversation=GROUP, sender="mia")


async def test_receipts_in_another_conversation_do_not_count(api: Api) -> None:
    """§4: only receipts of the message's own conversation mark it."""
    await post_all(
        api,
        [
            sent(10),
            sent(12, conversation="alice_user_carol", sender="carol"),
            direct("read", 12, s(1), sender="carol"),  # alice reads carol's 12: another conversation
            group("read", 13, s(2), reader=READER, sender="mia"),  # alice reads in a group: another conversation
            direct("delivered", 11, s(5)),  # alice's watermark in alice_user_bob
        ],
    )

    assert await receipts_of(api, "10") == answer("10", [row(READER, iso(5), None)])
    assert await receipts_of(api, "12") == answer(
        "12", [row(READER, iso(1), iso(1))], conversation="alice_user_carol", sender="carol"
    )


async def test_several_readers_are_sorted_by_uid(api: Api) -> None:
    """§4: ``receipts`` lists each reader with at least one time, sorted by uid."""
    await post_all(
        api,
        [
            sent(10, conversation=GROUP, sender="mia"),
            group("read", 10, s(3), reader="zoe", sender="mia"),
            group("delivered", 10, s(1), reader="adam", sender="mia"),
            group("read", 11, s(2), reader="lee", sender="nico"),
        ],
    )

    assert await receipts_of(api, "10") == answer(
        "10",
        [row("adam", iso(1), None), row("lee", iso(2), iso(2)), row("zoe", iso(3), iso(3))],
        conversation=GROUP,
        sender="mia",
    )


async def test_readers_sort_by_code_point_on_every_backend(api: Api) -> None:
    """§4 sorting: readers in code-point order of their uids (case and punctuation count), as ``sorted`` gives."""
    readers = ["zoe", "Zed", "adam", "a-b", "ab", "a_c"]
    await post_all(
        api,
        [sent(10, conversation=GROUP, sender="mia")]
        + [group("delivered", 10, s(1), reader=reader, sender="mia") for reader in readers],
    )

    assert await receipts_of(api, "10") == answer(
        "10",
        [row(reader, iso(1), None) for reader in ["Zed", "a-b", "a_c", "ab", "adam", "zoe"]],
        conversation=GROUP,
        sender="mia",
    )
    assert sorted(readers) == ["Zed", "a-b", "a_c", "ab", "adam", "zoe"]


async def test_the_sender_is_never_listed_as_a_reader(api: Api) -> None:
    """§4: the message's own sender is never its reader, even when a receipt or a watermark says so."""
    await post_all(
        api,
        [
            sent(10, conversation=GROUP, sender="mia"),
            sent(12, conversation=GROUP, sender="zoe"),
            group("read", 10, s(1), reader="mia", sender="mia"),  # receiptSender == sender
            group("read", 12, s(2), reader="mia", sender="zoe"),  # mia reads zoe's 12, so also her own 10
            group("delivered", 12, s(3), reader="zoe", sender="zoe"),
        ],
    )

    assert await receipts_of(api, "10") == answer("10", [row("zoe", iso(3), None)], conversation=GROUP, sender="mia")
    assert await receipts_of(api, "12") == answer("12", [row("mia", iso(2), iso(2))], conversation=GROUP, sender="zoe")


async def test_a_sender_known_only_from_a_receipt_is_not_listed_as_a_reader(api: Api) -> None:
    """§4: the sender named by a group receipt's ``messageSender`` is not listed as a reader either."""
    await post_all(
        api,
        [
            group("read", 50, s(1), reader="mia", sender="mia"),
            group("delivered", 50, s(2), reader="zoe", sender="mia"),
        ],
    )

    assert await receipts_of(api, "50") == answer("50", [row("zoe", iso(2), None)], conversation=GROUP, sender="mia")


async def test_the_sender_is_null_when_not_known(api: Api) -> None:
    """§4: ``sender`` is ``null`` for a message named only by a group receipt without ``messageSender``."""
    await post_all(api, [group("delivered", 60, s(1), reader="zoe", sender=None)])

    assert await receipts_of(api, "60") == answer("60", [row("zoe", iso(1), None)], conversation=GROUP, sender=None)


async def test_a_later_after_message_names_the_unknown_sender(api: Api) -> None:
    """§4: once the ``after_message`` arrives, its sender is known, whatever the receipts said first."""
    await post_all(
        api,
        [
            group("read", 60, s(1), reader="zoe", sender=None),
            group("read", 60, s(2), reader="mia", sender=None),
            sent(60, conversation=GROUP, sender="mia"),
        ],
    )

    assert await receipts_of(api, "60") == answer("60", [row("zoe", iso(1), iso(1))], conversation=GROUP, sender="mia")


async def test_an_unknown_message_is_404_with_the_error_shape(api: Api) -> None:
    """§4: an id no ``after_message`` and no receipt ever named answers ``404`` with the error shape."""
    await post_all(api, [sent(10), direct("read", 10, s(1))])

    for unknown in ("11", "9"):
        response = await api.get(f"/messages/{unknown}/receipts")
        assert response.status == 404
        payload = await response.json()
        assert set(payload) == {"error"}
        assert set(payload["error"]) == {"code", "message"}
        assert payload["error"]["code"] == "not_found"
        assert isinstance(payload["error"]["message"], str)
        assert payload["error"]["message"]


async def test_a_known_message_without_receipts_has_an_empty_list(api: Api) -> None:
    """§4: a known message without receipts answers ``200`` with no readers and zero counts."""
    await post_all(api, [sent(10)])

    assert await receipts_of(api, "10") == {
        "message_id": "10",
        "conversation_id": DIRECT,
        "sender": SENDER,
        "receipts": [],
        "delivered_count": 0,
        "read_count": 0,
        **NOTHING_CURRENT,
    }


async def test_delivered_and_read_counts(api: Api) -> None:
    """§4: ``delivered_count`` counts readers with a delivery time, ``read_count`` those with a read time."""
    await post_all(
        api,
        [
            sent(10, conversation=GROUP, sender="mia"),
            group("delivered", 10, s(1), reader="zoe", sender="mia"),
            group("read", 10, s(2), reader="adam", sender="mia"),
            group("delivered", 10, s(3), reader="lee", sender="mia"),
            group("read", 10, s(4), reader="lee", sender="mia"),
        ],
    )

    assert await receipts_of(api, "10") == {
        "message_id": "10",
        "conversation_id": GROUP,
        "sender": "mia",
        "receipts": [
            {"uid": "adam", "delivered_at": "2025-11-21T10:15:32.000Z", "read_at": "2025-11-21T10:15:32.000Z"},
            {"uid": "lee", "delivered_at": "2025-11-21T10:15:33.000Z", "read_at": "2025-11-21T10:15:34.000Z"},
            {"uid": "zoe", "delivered_at": "2025-11-21T10:15:31.000Z", "read_at": None},
        ],
        "delivered_count": 3,
        "read_count": 2,
        **NOTHING_CURRENT,
    }
