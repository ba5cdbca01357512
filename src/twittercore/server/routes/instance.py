"""The instance's description (v1 and v2), the OAuth server metadata, the streaming health check."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import twittercore

from ..auth import SCOPES
from ..context import server_of
from ..entities import MAX_CHARS
from ..http import base_url, json_response

__all__ = ["ROUTES", "VERSION"]

VERSION = f"4.3.0 (compatible; twittercore {twittercore.__version__})"
_STATUS_LIMITS = {"max_characters": MAX_CHARS, "max_media_attachments": 0, "characters_reserved_per_url": 23}


async def instance_v1(request: Request) -> Response:
    server = server_of(request)
    host = request.url.netloc
    return json_response(
        {
            "uri": host,
            "title": "twittercore",
            "short_description": "A Mastodon-compatible example server on a twittercore store",
            "description": "A Mastodon-compatible example server on a twittercore store",
            "email": "",
            "version": VERSION,
            "urls": {"streaming_api": f"{'wss' if request.url.scheme == 'https' else 'ws'}://{host}"},
            "stats": server.stats(),
            "thumbnail": None,
            "languages": ["en"],
            "registrations": False,
            "approval_required": False,
            "invites_enabled": False,
            "configuration": {"statuses": _STATUS_LIMITS},
            "contact_account": None,
            "rules": [],
        }
    )


async def instance_v2(request: Request) -> Response:
    server = server_of(request)
    host = request.url.netloc
    return json_response(
        {
            "domain": host,
            "title": "twittercore",
            "version": VERSION,
            "api_versions": {"mastodon": 2},  # Mastodon 4.3's API level, which clients check
            "source_url": "https://github.com/",
            "description": "A Mastodon-compatible example server on a twittercore store",
            "usage": {"users": {"active_month": server.stats()["user_count"]}},
            "thumbnail": {"url": f"{base_url(request)}/thumbnail.png"},
            "languages": ["en"],
            "configuration": {
                "urls": {"streaming": f"{'wss' if request.url.scheme == 'https' else 'ws'}://{host}"},
                "accounts": {"max_featured_tags": 0},
                "statuses": _STATUS_LIMITS,
                "media_attachments": {"supported_mime_types": [], "image_size_limit": 0, "video_size_limit": 0},
                "polls": {"max_options": 0, "max_characters_per_option": 0, "min_expiration": 0, "max_expiration": 0},
                "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": "", "account": None},
            "rules": [],
        }
    )


async def oauth_metadata(request: Request) -> Response:
    """RFC 8414 metadata, as Mastodon 4.3 serves it (Mastodon.py reads the grant types here)."""
    base = base_url(request)
    return json_response(
        {
            "issuer": f"{base}/",
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "app_registration_endpoint": f"{base}/api/v1/apps",
            "scopes_supported": sorted(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "service_documentation": "https://docs.joinmastodon.org/",
        }
    )


async def streaming_health(request: Request) -> Response:
    return Response("OK", media_type="text/plain")


ROUTES = [
    Route("/api/v1/instance", instance_v1, methods=["GET"]),
    Route("/api/v2/instance", instance_v2, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", oauth_metadata, methods=["GET"]),
    Route("/api/v1/streaming/health", streaming_health, methods=["GET"]),
]
