"""The status payload encoding and the Mastodon-shaped JSON entities.

The store keeps a status as opaque bytes: this module decides what those bytes
are (compact JSON, short keys) and how a stored event becomes a Mastodon
``Status``, an account a Mastodon ``Account``, an edge a ``Relationship``.
Ids are strings on the wire, as in Mastodon, because JavaScript clients cannot
hold 64-bit integers.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from .state import Account

__all__ = [
    "MAX_CHARS",
    "encode_status",
    "decode_status",
    "iso",
    "render_content",
    "status_json",
    "account_json",
    "relationship_json",
    "dumps",
]

#: Mastodon's default character limit for a status.
MAX_CHARS = 500

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    return _encoder.encode(value).encode()


# ------------------------------------------------------------------ payloads
# Payload keys: t = text, v = visibility, s = sensitive, w = spoiler text
# ("content warning"), l = language.  (Statuses written by earlier versions
# may carry k, their Idempotency-Key, now kept by the store itself: ignored.)
# Absent keys take their defaults, so a plain post costs ~20 bytes of overhead.


def encode_status(
    text: str,
    visibility: str = "public",
    sensitive: bool = False,
    spoiler: str = "",
    language: str | None = None,
) -> bytes:
    body: dict[str, Any] = {"t": text}
    if visibility != "public":
        body["v"] = visibility
    if sensitive:
        body["s"] = 1
    if spoiler:
        body["w"] = spoiler
    if language:
        body["l"] = language
    return dumps(body)


def decode_status(payload: bytes) -> dict[str, Any]:
    """The payload as a dict; a payload not written by this server reads as raw text."""
    try:
        body = json.loads(payload)
        if isinstance(body, dict) and isinstance(body.get("t"), str):
            return body
    except ValueError:
        pass
    # Another embedder may share the store: show its bytes rather than fail.
    return {"t": payload.decode("utf-8", "replace")}


# ----------------------------------------------------------------- rendering


def iso(seconds: float) -> str:
    """Mastodon's timestamp format: UTC, milliseconds, trailing Z."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def render_content(text: str) -> str:
    """Plain text to Mastodon's HTML: escaped, paragraphs on blank lines, <br /> inside."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join("<p>" + "<br />".join(html.escape(line) for line in p.split("\n")) + "</p>" for p in paragraphs)


def account_json(
    base: str, account: Account, followers: int, following: int, statuses: int, last_status_at: str | None
) -> dict[str, Any]:
    created = iso(account.created_at)
    return {
        "id": str(account.id),
        "username": account.username,
        "acct": account.username,
        "display_name": account.username,
        "locked": False,
        "bot": False,
        "discoverable": True,
        "group": False,
        "created_at": created[:10] + "T00:00:00.000Z",  # Mastodon rounds to the day
        "note": "",
        "url": f"{base}/@{account.username}",
        "uri": f"{base}/users/{account.username}",
        "avatar": f"{base}/avatars/original/missing.png",
        "avatar_static": f"{base}/avatars/original/missing.png",
        "header": f"{base}/headers/original/missing.png",
        "header_static": f"{base}/headers/original/missing.png",
        "followers_count": followers,
        "following_count": following,
        "statuses_count": statuses,
        "last_status_at": last_status_at,
        "emojis": [],
        "fields": [],
    }


def status_json(base: str, id: int, time: float, body: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    username = account["username"]
    return {
        "id": str(id),
        "created_at": iso(time),
        "in_reply_to_id": None,
        "in_reply_to_account_id": None,
        "sensitive": bool(body.get("s")),
        "spoiler_text": body.get("w", ""),
        "visibility": body.get("v", "public"),
        "language": body.get("l"),
        "uri": f"{base}/users/{username}/statuses/{id}",
        "url": f"{base}/@{username}/{id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": None,
        "content": render_content(body["t"]),
        "reblog": None,
        "application": None,
        "account": account,
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def relationship_json(id: int, following: bool, followed_by: bool) -> dict[str, Any]:
    return {
        "id": str(id),
        "following": following,
        "showing_reblogs": following,
        "notifying": False,
        "languages": None,
        "followed_by": followed_by,
        "blocking": False,
        "blocked_by": False,
        "muting": False,
        "muting_notifications": False,
        "requested": False,
        "requested_by": False,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }
