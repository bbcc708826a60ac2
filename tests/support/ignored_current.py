"""Bodies of CometChat's current triggers that ``presence`` ignores, carrying content and personal data.

Each sample follows the payload CometChat documents for its trigger (field names and nesting
are CometChat's; the values are ours), and puts ``marker`` into every field that holds message
text, attachments, reaction text, moderation details, call or meeting content, custom data or
a person's profile, so that a test can look for it in what is stored.

Sources, named per sample:

- *docs events*: CometChat's documentation, "Webhooks: Events" (``/webhooks-events``; the page
  https://www.cometchat.com/docs/fundamentals/webhooks-events, also in the docs sources kept in the
  public index), which gives a payload example of every current trigger.
- *docs calls*: "Call Session Events" and "Ringing Events"
  (https://www.cometchat.com/docs/calls/webhooks-call-session, .../calls/webhooks-ringing).
- *automation*: the public repository ``Amandubey-cometchat/cometchat-webhook-automation``, which
  checks live deliveries: ``src/validators/message.validator.ts`` (reactions, mentions),
  ``src/validators/moderation.validator.ts`` (moderation, captured live), ``user.validator.ts``
  (blocks), ``receiver/public/trigger-categories.json`` (the list of triggers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.payloads import APP_ID, Body

UID_1 = "cometchat-uid-1"
UID_2 = "cometchat-uid-2"
CONVERSATION = f"{UID_1}_user_{UID_2}"
MESSAGE_ID = "38439"
REACTION_ID = "1207"
SESSION_ID = "v1.us.167-6b1e8d3a-session"
CALL_ID = "52"
RULE_ID = "email_filter"


@dataclass(frozen=True, slots=True)
class Sample:
    """A body and the ids the inbox must still hold once its content is removed."""

    body: Body
    ids: tuple[str, ...]

    @property
    def trigger(self) -> str:
        trigger: str = self.body["trigger"]
        return trigger


def _envelope(trigger: str, data: dict[str, Any], **extra: Any) -> Body:
    return {"trigger": trigger, "data": data, **extra, "appId": APP_ID, "region": "us", "webhook": "ignored-current"}


def _person(uid: str, marker: str) -> dict[str, Any]:
    """A user entity as CometChat embeds one: the uid and a profile."""
    return {
        "uid": uid,
        "name": f"{marker}-name-{uid}",
        "avatar": f"https://assets.example/{marker}-avatar.webp",
        "status": "available",
        "role": "default",
        "lastActiveAt": 1_696_934_440,
        "metadata": {"phone": f"{marker}-phone"},
    }


def _message(marker: str, *, text: str | None = None) -> dict[str, Any]:
    """A message object with content everywhere CometChat puts it."""
    return {
        "id": MESSAGE_ID,
        "muid": "_zhovsxqdo",
        "conversationId": CONVERSATION,
        "sender": UID_2,
        "receiverType": "user",
        "receiver": UID_1,
        "category": "message",
        "type": "text",
        "data": {
            "text": text or f"{marker}-text",
            "resource": "WEB-4_0_10-a10f2a72",
            "entities": {
                "sender": {"entity": _person(UID_2, marker), "entityType": "user"},
                "receiver": {"entity": _person(UID_1, marker), "entityType": "user"},
            },
            "attachments": [{"url": f"https://files.example/{marker}-file.png", "name": f"{marker}-file"}],
            "metadata": {"@injected": {"extensions": {"link-preview": {"title": f"{marker}-preview"}}}},
            "customData": {"note": f"{marker}-custom"},
            "moderation": {"status": "disapproved", "rule": {"id": RULE_ID}},
        },
        "sentAt": 1_738_591_286,
        "updatedAt": 1_738_591_286,
    }


def _reaction(trigger: str, marker: str) -> Sample:
    # docs events: message_reaction_added / message_reaction_removed; automation:
    # validateMessageReactionAdded reads data.reaction.messageId, .reaction and .reactedBy.uid.
    return Sample(
        _envelope(
            trigger,
            {
                "reaction": {
                    "id": REACTION_ID,
                    "messageId": MESSAGE_ID,
                    "reaction": f"🏒{marker}-reaction",
                    "uid": UID_1,
                    "reactedAt": 1_700_655_536,
                    "reactedBy": _person(UID_1, marker),
                }
            },
        ),
        ids=(REACTION_ID, MESSAGE_ID, UID_1),
    )


def _mention(marker: str) -> Sample:
    # docs events: user_mentioned, the message with data.mentions (the mentioned users' profiles);
    # automation: validateUserMentioned reads data.message.data.text and data.message.data.mentions.
    message = _message(marker, text=f"Hi <@uid:{UID_2}> {marker}-mention-text")
    message["data"]["mentions"] = {UID_2: _person(UID_2, marker)}
    return Sample(_envelope("user_mentioned", {"message": message}), ids=(MESSAGE_ID, CONVERSATION, UID_1, UID_2))


def _moderation(trigger: str, marker: str) -> Sample:
    # docs events: moderation_engine_approved (with its "filter failure" variant), _blocked,
    # _manual_approved: the message, and data.moderation, a list of {condition | filter, rule}.
    # automation (captured live): data.message.data.moderation.{status, rule.id} and
    # data.moderation[0].rule.{id, action}. The condition's "value" lists the patterns or words
    # the rule looks for (which can be the very words matched), its "message" describes them. The
    # rule's "reason" is NOT in the documented payload: CometChat's custom moderation API answers
    # with one (docs: moderation/custom/custom-api) and users ask for it in the webhook (feedback
    # board, "Include detailed violation Reasons in moderation_engine_blocked"), so it is here too.
    condition = {
        "entity": "message",
        "operand": "text",
        "category": "pattern",
        "operator": "contains",
        "value": [f"{marker}-pattern"],
        "message": f"{marker}-condition-message",
    }
    moderation_filter = {
        "entity": "user",
        "operand": "uid",
        "operator": "equals",
        "value": f"{marker}-filter-value",
        "type": "sender",
        "_id": "67a0f23442ec6ee218670893",
    }
    rule = {
        "id": RULE_ID,
        "name": "Email filter",
        "revisionId": "2531882e5e289115_contact_email_filter_7",
        "action": ["blockMessage"],
        "blockedAt": 1_738_591_286,
        "reason": f"{marker}-reason",
    }
    results: list[dict[str, Any]] = [{"condition": condition, "rule": rule}]
    if trigger == "moderation_engine_approved":
        results = [{"filter": moderation_filter, "rule": rule}]
    return Sample(
        _envelope(trigger, {"message": _message(marker), "moderation": results}),
        ids=(MESSAGE_ID, CONVERSATION, RULE_ID, UID_1, UID_2),
    )


def _blocked(trigger: str, marker: str) -> Sample:
    # docs events: user_blocked / user_unblocked, data.users keyed by uid and data.by;
    # automation: validateUserBlocked reads data.by.uid and the keys of data.users.
    return Sample(
        _envelope(trigger, {"users": {UID_2: _person(UID_2, marker)}, "by": _person(UID_1, marker)}),
        ids=(UID_1, UID_2),
    )


def _call_initiated(marker: str) -> Sample:
    # docs events and docs calls (ringing): call_initiated, an action message of category "call"
    # whose data.entities.on.entity is the call (with its own data.entities), and data.resource.
    call_entity = {
        "sessionid": SESSION_ID,
        "conversationId": f"{UID_1}_user_cometchat-uid-5",
        "sender": UID_1,
        "receiverType": "user",
        "receiver": "cometchat-uid-5",
        "status": "initiated",
        "type": "audio",
        "data": {"entities": {"sender": {"entity": _person(UID_1, marker), "entityType": "user"}}},
        "initiatedAt": 1_696_934_199,
        "joinedAt": 1_696_934_199,
    }
    call = {
        "id": CALL_ID,
        "conversationId": f"{UID_1}_user_cometchat-uid-5",
        "sender": UID_1,
        "receiverType": "user",
        "receiver": "cometchat-uid-5",
        "category": "call",
        "type": "audio",
        "data": {
            "action": "initiated",
            "entities": {
                "by": {"entity": _person(UID_1, marker), "entityType": "user"},
                "for": {"entity": _person("cometchat-uid-5", marker), "entityType": "user"},
                "on": {"entity": call_entity, "entityType": "call"},
            },
            "resource": "WEB-3_0_12-acfa8397",
        },
        "sentAt": 1_696_934_199,
        "updatedAt": 1_696_934_199,
    }
    return Sample(_envelope("call_initiated", {"call": call}), ids=(CALL_ID, UID_1))


def _occupant(marker: str, *, left: bool) -> dict[str, Any]:
    occupant: dict[str, Any] = {"joined_at": 1_696_934_573, "audio_call": "true", "name": f"{marker}-occupant"}
    if left:
        occupant["left_at"] = 1_696_934_600
    return occupant


_INITIAL_CONFIG = {
    "is_video_muted": "false",
    "start_recording_on_call_start": "false",
    "call_version": "2.3.0",
    "is_audio_muted": "false",
    "sdk": "react",
    "mode": "DEFAULT",
    "platform": "web",
    "is_audio_only": "true",
}


def _session(trigger: str, marker: str) -> Sample:
    # docs events and docs calls: call_* and meeting_* session triggers carry data.sessionId, a
    # top-level "type" ("call" / "meet"), and an occupant who is named but has no uid.
    kind = "call" if trigger.startswith("call_") else "meet"
    data: dict[str, Any] = {"sessionId": SESSION_ID}
    if trigger.endswith("_started"):
        data["created_at"] = 1_696_934_572
    elif trigger.endswith("_participant_joined"):
        data |= {"occupant": _occupant(marker, left=False), "initial_config": _INITIAL_CONFIG}
    elif trigger.endswith("_participant_left"):
        data["occupant"] = _occupant(marker, left=True)
    else:  # _ended
        data |= {
            "all_occupants": [_occupant(marker, left=True), _occupant(marker, left=True)],
            "destroyed_at": 1_696_934_600,
            "created_at": 1_696_934_572,
        }
    return Sample(_envelope(trigger, data, type=kind), ids=(SESSION_ID,))


def _recording(marker: str) -> Sample:
    # docs events and docs calls: recording_generated, the recording's URL (a call's content).
    return Sample(
        _envelope(
            "recording_generated",
            {
                "recordingDate": "2023-10-10",
                "duration": "21.433000",
                "startTime": "1696937627",
                "sessionId": SESSION_ID,
                "recording_url": f"https://recordings.example/{marker}-recording.mp4",
            },
        ),
        ids=(SESSION_ID,),
    )


SESSION_TRIGGERS = (
    "call_started",
    "call_participant_joined",
    "call_participant_left",
    "call_ended",
    "meeting_started",
    "meeting_participant_joined",
    "meeting_participant_left",
    "meeting_ended",
)


def samples(marker: str) -> list[Sample]:
    """One sample of every ignored current trigger found documented, content marked with ``marker``."""
    return [
        _reaction("message_reaction_added", marker),
        _reaction("message_reaction_removed", marker),
        _mention(marker),
        *(
            _moderation(trigger, marker)
            for trigger in ("moderation_engine_approved", "moderation_engine_blocked", "moderation_manual_approved")
        ),
        _blocked("user_blocked", marker),
        _blocked("user_unblocked", marker),
        _call_initiated(marker),
        *(_session(trigger, marker) for trigger in SESSION_TRIGGERS),
        _recording(marker),
    ]
