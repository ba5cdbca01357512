"""HTTP plumbing shared by every route: errors, request parsing, paging, CORS.

Everything a client sends passes through here before a handler looks at it,
so this is where malformed input becomes a 4xx in Mastodon's error shape
(``{"error": "..."}``) instead of an exception deeper down: bodies that are
too large, not UTF-8, not JSON, nested too deep, hold lone UTF-16
surrogates, or give a field the wrong type.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

import twittercore

from .entities import dumps

__all__ = [
    "ApiError",
    "json_response",
    "not_found",
    "parse_id",
    "path_id",
    "parse_limit",
    "flag",
    "text_field",
    "form",
    "base_url",
    "link_header",
    "paging",
    "MAX_BODY",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_ACCOUNT_LIMIT",
]

DEFAULT_LIMIT, MAX_LIMIT = 20, 40  # Mastodon's page sizes for statuses
MAX_ACCOUNT_LIMIT = 80  # ... and for account lists
#: Largest request body accepted (a status is at most 500 characters: this is generous).
MAX_BODY = 64 * 1024
#: Deepest JSON nesting accepted; Mastodon's own forms are flat.
MAX_DEPTH = 8


class ApiError(Exception):
    """Raised by a handler; rendered as Mastodon's ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


def not_found() -> ApiError:
    return ApiError(404, "Record not found")


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20 and int(text) <= twittercore.MAX_NODE


def parse_id(text: Any, what: str = "id") -> int | None:
    """A decimal id as an int; None if absent.  Ids on the wire are strings (ints are taken too)."""
    if text is None or text == "":
        return None
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text <= twittercore.MAX_NODE:
        return text
    if not isinstance(text, str) or not _is_id(text):
        raise ApiError(400, f"{what}: expected a numeric id string, got {str(text)[:40]!r}")
    return int(text)


def path_id(request: Request, name: str = "id") -> int:
    """The id in the URL; an id that cannot exist is simply not found."""
    text = request.path_params[name]
    if not _is_id(text):
        raise not_found()
    return int(text)


def parse_limit(request: Request, default: int, largest: int, name: str = "limit") -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        limit = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected an integer, got {text[:40]!r}") from None
    # Mastodon clamps rather than refuses.
    return max(1, min(limit, largest))


_TRUE = ("1", "true", "t", "on", "yes")
_FALSE = ("0", "false", "f", "off", "no", "")


def flag(params: Any, name: str, default: bool = False, status: int = 422) -> bool:
    """A boolean parameter as Rails reads one; anything else is a ``status`` (422 in a body, 400 in a query)."""
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ApiError(
        status, f"{'Validation failed: ' if status == 422 else ''}{name}: expected a boolean, got {str(value)[:40]!r}"
    )


def text_field(params: dict[str, Any], name: str, largest: int, default: str | None = None) -> str | None:
    """A string parameter of at most ``largest`` characters (None/absent gives ``default``)."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ApiError(422, f"Validation failed: {name}: expected a string, got {type(value).__name__}")
    if len(value) > largest:
        raise ApiError(422, f"Validation failed: {name}: at most {largest} characters")
    return value


def _check_tree(value: Any, depth: int = 0) -> None:
    """Reject lone surrogates anywhere and nesting deeper than MAX_DEPTH."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                # What a JavaScript client sends when it cuts text inside an emoji.
                raise ApiError(400, "body: a string holds a lone UTF-16 surrogate (send whole characters)") from None
    elif isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise ApiError(400, f"body: nested deeper than {MAX_DEPTH} levels")
        for item in value.values() if isinstance(value, dict) else value:
            _check_tree(item, depth + 1)
        if isinstance(value, dict):
            for key in value:
                _check_tree(key, depth + 1)


async def read_body(request: Request, largest: int = MAX_BODY) -> bytes:
    """The body, refusing more than ``largest`` bytes (413) whether or not Content-Length says so."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > largest):
        raise ApiError(413, f"body: larger than {largest} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > largest:
            raise ApiError(413, f"body: larger than {largest} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's own parsers (request.form()) re-read the body from here once
    # the stream is consumed.
    request._body = body
    return body


def _multi(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Rails-style form pairs: ``a[]=1&a[]=2`` becomes ``{"a": ["1", "2"]}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            out.setdefault(key[:-2], [])
            if isinstance(out[key[:-2]], list):
                out[key[:-2]].append(value)
        else:
            out[key] = value
    return out


async def form(request: Request) -> dict[str, Any]:
    """Request parameters from a JSON or urlencoded body, or the query string (Mastodon takes all three)."""
    raw = await read_body(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    params = _multi(request.query_params.multi_items())
    _check_tree(params)
    if not raw:
        return params
    if kind == "application/json":
        try:
            body = json.loads(raw)
        except RecursionError:
            raise ApiError(400, f"body: nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            raise ApiError(400, f"body: malformed JSON ({str(exc)[:80]})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body: expected a JSON object")
        _check_tree(body)
        params.update(body)
    elif kind in ("application/x-www-form-urlencoded", ""):
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ApiError(400, "body: not UTF-8") from None
        params.update(_multi(parse_qsl(text, keep_blank_values=True)))
    elif kind == "multipart/form-data":
        try:
            async with request.form(max_files=0, max_fields=100) as data:
                params.update(_multi([(k, v) for k, v in data.multi_items() if isinstance(v, str)]))
        except Exception as exc:  # starlette raises its own parse errors
            raise ApiError(400, f"body: malformed multipart form ({str(exc)[:80]})") from None
        _check_tree(params)
    else:
        raise ApiError(415, f"body: unsupported content type {kind[:60]!r} (send JSON or a urlencoded form)")
    return params


def base_url(request: Request) -> str:
    # From the scope directly: building request.url costs more than the home read.
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope['scheme']}://{host}"


def link_header(request: Request, newest: str, oldest: str | None) -> str:
    """Mastodon's Link header: rel=next pages to older items (max_id), rel=prev to newer (min_id)."""
    keep = [(k, v) for k, v in request.query_params.multi_items() if k not in ("max_id", "since_id", "min_id")]
    url = f"{base_url(request)}{request.scope['path']}?{urlencode(keep) + '&' if keep else ''}"
    links = []
    if oldest is not None:
        links.append(f'<{url}max_id={quote(oldest)}>; rel="next"')
    if newest:
        links.append(f'<{url}min_id={quote(newest)}>; rel="prev"')
    return ", ".join(links)


def paging(request: Request) -> dict[str, Any] | None:
    """Mastodon's paging parameters as the store's (None: the page is empty).

    Mastodon's ``max_id`` is exclusive ("lesser than"), the store's inclusive
    (Twitter's), so it shifts by one; ``since_id`` and ``min_id`` agree.
    """
    q = request.query_params
    max_id = parse_id(q.get("max_id"), "max_id")
    if max_id == 0:
        return None  # nothing is below id 0
    return {
        "limit": parse_limit(request, DEFAULT_LIMIT, MAX_LIMIT),
        "max_id": None if max_id is None else max_id - 1,
        "since_id": parse_id(q.get("since_id"), "since_id"),
        "min_id": parse_id(q.get("min_id"), "min_id"),
    }


# ------------------------------------------------------------------- CORS
# As Mastodon configures rack-cors: any origin, no credentials, on the API
# and the OAuth token endpoints (not on the HTML authorize page).

_CORS_PATHS = ("/api/", "/oauth/token", "/oauth/revoke", "/1.1/")
_CORS_METHODS = b"POST, PUT, DELETE, GET, PATCH, OPTIONS"
_CORS_EXPOSE = b"Link, X-RateLimit-Reset, X-RateLimit-Limit, X-RateLimit-Remaining, X-Request-Id, Idempotency-Key"


def cors_origin(scope: dict[str, Any]) -> bytes | None:
    """The request's Origin when CORS applies to it, else None."""
    if not scope["path"].startswith(_CORS_PATHS):
        return None
    for key, value in scope["headers"]:
        if key == b"origin":
            return bytes(value)
    return None


def cors_preflight(scope: dict[str, Any]) -> Response | None:
    """The answer to a preflight (OPTIONS with Access-Control-Request-Method), else None."""
    headers = dict(scope["headers"])
    if scope["method"] != "OPTIONS" or b"access-control-request-method" not in headers or cors_origin(scope) is None:
        return None
    allow = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": _CORS_METHODS.decode(),
        "Access-Control-Max-Age": "7200",
        "Vary": "Origin",
    }
    asked = headers.get(b"access-control-request-headers")
    if asked:
        allow["Access-Control-Allow-Headers"] = asked.decode("latin-1")
    return Response(b"", 200, allow)


#: Response header naming the worker process that answered (its PID), so a
#: load tool or an operator behind a balancer can see how load is spread.
WORKER_HEADER = b"x-twittercore-worker"


def worker_send(send: Any, pid: bytes) -> Any:
    """Wrap ``send`` so the response start names this worker (``WORKER_HEADER``)."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), (WORKER_HEADER, pid)]
        await send(message)

    return wrapped


def cors_send(send: Any) -> Any:
    """Wrap ``send`` so the response start carries Mastodon's CORS headers."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [
                *message.get("headers", []),
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", _CORS_METHODS),
                (b"access-control-expose-headers", _CORS_EXPOSE),
                (b"vary", b"Origin"),
            ]
        await send(message)

    return wrapped
