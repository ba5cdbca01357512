"""OAuth 2 as Mastodon does it: app registration, the authorize page, tokens, revocation.

* ``POST /api/v1/apps`` registers a client (its secret is shown once);
* ``GET /oauth/authorize`` shows a minimal login-and-consent page, and
  its ``POST`` checks the password, then redirects to the app's
  ``redirect_uri`` with a single-use code (or shows the code, for
  ``urn:ietf:wg:oauth:2.0:oob``); PKCE (``S256``) binds the code to the app
  instance that asked;
* ``POST /oauth/token`` trades an authorization code (with the PKCE
  verifier), a username/email and password, or the client's own
  credentials for a bearer token;
* ``POST /oauth/revoke`` revokes a token issued to the calling client.

Errors on the token endpoints are RFC 6749's ``{"error": code,
"error_description": text}``, which is Mastodon's error shape too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import importlib.resources
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..auth import check_password, forget, parse_scopes
from ..context import Server, server_of
from ..http import ApiError, form, json_response, text_field
from ..state import Client, CodeGrant

__all__ = ["ROUTES", "OOB"]

OOB = "urn:ietf:wg:oauth:2.0:oob"
_PAGE = Template(
    importlib.resources.files("twittercore.server").joinpath("templates/authorize.html").read_text("utf-8")
)
# The page must not be framed (clickjacking) nor leak the code by referrer.
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


class OAuthError(ApiError):
    """An RFC 6749 error: rendered as ``{"error": code, "error_description": text}``."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(status, description)
        self.code = code


def oauth_body(exc: OAuthError) -> dict[str, str]:
    return {"error": exc.code, "error_description": exc.message}


# ------------------------------------------------------------------- apps


def _redirect_uris(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        uris = [str(v).strip() for v in value if isinstance(v, str)]
    elif isinstance(value, str):
        uris = value.split()
    else:
        uris = []
    if not uris:
        raise ApiError(422, "Validation failed: Redirect URI can't be blank")
    for uri in uris:
        parts = urlsplit(uri)
        if len(uri) > 2000 or (
            uri != OOB
            and (not parts.scheme or parts.fragment or (parts.scheme in ("http", "https") and not parts.netloc))
        ):
            raise ApiError(
                422,
                f"Validation failed: Redirect URI {uri[:60]!r} must be an absolute URI without a fragment, or {OOB}",
            )
    return tuple(dict.fromkeys(uris))


def _app_json(client: Client, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(client.id),
        "name": client.name,
        "website": client.website,
        "scopes": sorted(client.scopes),
        "redirect_uri": "\n".join(client.redirect_uris),
        "redirect_uris": list(client.redirect_uris),
        "vapid_key": "",
        "client_id": client.client_id,
    }
    if secret is not None:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    return body


async def create_client(request: Request) -> Response:
    server = server_of(request)
    params = await form(request)
    name = text_field(params, "client_name", 100)
    if not name or not name.strip():
        raise ApiError(422, "Validation failed: Application name can't be blank")
    uris = _redirect_uris(params.get("redirect_uris"))
    scopes = parse_scopes(params.get("scopes"))
    website = text_field(params, "website", 2000)
    client, secret = await run_in_threadpool(server.state.create_client, name, uris, scopes, website)
    return json_response(_app_json(client, secret))


# -------------------------------------------------------------- authorize


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.substitute(title=html.escape(title), body=body), status, _PAGE_HEADERS)


def _login_form(server: Server, client: Client, params: dict[str, Any], scopes: frozenset[str], error: str = "") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(params[k]))}">'
        for k in (
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        )
        if isinstance(params.get(k), str)
    )
    warning = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return (
        f"<p><strong>{html.escape(client.name)}</strong> asks to act as your account with these permissions:</p>"
        f'<p class="scopes">{html.escape(" ".join(sorted(scopes)))}</p>{warning}'
        f'<form method="post" action="/oauth/authorize">{hidden}'
        '<label for="username">Username or email</label><input type="text" id="username" name="username" autocomplete="username" required>'
        '<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<button type="submit" name="decision" value="approve">Authorize</button> '
        '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></form>'
    )


def _check_authorize(server: Server, params: dict[str, Any]) -> tuple[Client, str, frozenset[str]]:
    """The client, redirect URI and scopes of an authorize request; an HTML error page when they are wrong."""
    client_id = params.get("client_id")
    client = server.state.client(client_id) if isinstance(client_id, str) and client_id else None
    if client is None:
        raise ApiError(400, "Client authentication failed: unknown client_id")
    redirect = params.get("redirect_uri") or (client.redirect_uris[0] if len(client.redirect_uris) == 1 else None)
    if not isinstance(redirect, str) or redirect not in client.redirect_uris:
        raise ApiError(400, "The redirect URI is not one of those the app registered")
    if params.get("response_type") != "code":
        raise ApiError(400, "response_type: only 'code' is supported")
    scopes = parse_scopes(params.get("scope"))
    if not scopes <= client.scopes:
        raise ApiError(400, f"scope: the app did not register {' '.join(sorted(scopes - client.scopes))!r}")
    method = params.get("code_challenge_method")
    if params.get("code_challenge") and method not in ("S256", None, ""):
        raise ApiError(400, "code_challenge_method: only S256 is supported")
    return client, redirect, scopes


async def authorize_page(request: Request) -> Response:
    server = server_of(request)
    params = dict(request.query_params)
    try:
        client, _, scopes = _check_authorize(server, params)
    except ApiError as exc:
        return _page(
            "Authorization failed",
            f'<p class="error">{html.escape(exc.message)}</p>',
            exc.status if exc.status < 500 else 400,
        )
    return _page("Authorize", _login_form(server, client, params, scopes))


def _redirect(uri: str, query: dict[str, str]) -> Response:
    parts = urlsplit(uri)
    joined = f"{uri}{'&' if parts.query else '?'}{urlencode(query)}"
    return RedirectResponse(joined, 302, headers={"Cache-Control": "no-store"})


async def authorize_submit(request: Request) -> Response:
    server = server_of(request)
    params = await form(request)
    try:
        client, redirect, scopes = _check_authorize(server, params)
    except ApiError as exc:
        return _page(
            "Authorization failed",
            f'<p class="error">{html.escape(exc.message)}</p>',
            exc.status if exc.status < 500 else 400,
        )
    state = params.get("state") if isinstance(params.get("state"), str) else None
    extra = {"state": state} if state else {}
    if params.get("decision") == "deny":
        if redirect == OOB:
            return _page("Authorization denied", "<p>You denied the request. You can close this page.</p>")
        return _redirect(
            redirect, {"error": "access_denied", "error_description": "The resource owner denied the request", **extra}
        )
    name, password = params.get("username"), params.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return _page("Authorize", _login_form(server, client, params, scopes, "Enter your username and password."), 401)
    found = await run_in_threadpool(server.state.login, name)
    ok = await run_in_threadpool(check_password, None if found is None else found[1], password)
    if not ok or found is None:
        return _page("Authorize", _login_form(server, client, params, scopes, "Invalid username or password."), 401)
    challenge = params.get("code_challenge") or None
    grant = CodeGrant(client.client_id, found[0].id, scopes, redirect, challenge, "S256" if challenge else None)
    code = await run_in_threadpool(server.state.issue_code, grant)
    if redirect == OOB:
        return _page(
            "Authorization code",
            f"<p>Copy this code and paste it into the application:</p><p><code>{html.escape(code)}</code></p>",
        )
    return _redirect(redirect, {"code": code, **extra})


# ------------------------------------------------------------------ tokens


def _client_auth(request: Request, server: Server, params: dict[str, Any]) -> Client:
    """The client from HTTP Basic or the body's client_id/client_secret (RFC 6749 2.3.1)."""
    client_id, secret = params.get("client_id"), params.get("client_secret")
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            client_id, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(
                401, "invalid_client", "Client authentication failed: malformed Basic credentials"
            ) from None
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id or not secret:
        raise OAuthError(
            401, "invalid_client", "Client authentication failed: client_id and client_secret are required"
        )
    client = server.state.client(client_id, secret)
    if client is None:
        raise OAuthError(
            401,
            "invalid_client",
            "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
        )
    return client


def _pkce_ok(grant: CodeGrant, verifier: Any) -> bool:
    if grant.challenge is None:
        return True
    if not isinstance(verifier, str) or not 43 <= len(verifier) <= 128:
        return False
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return hmac.compare_digest(computed, grant.challenge)


def _scopes_for(params: dict[str, Any], client: Client) -> frozenset[str]:
    try:
        scopes = parse_scopes(params.get("scope"))
    except ApiError as exc:
        raise OAuthError(400, "invalid_scope", exc.message) from None
    if not scopes <= client.scopes:
        raise OAuthError(400, "invalid_scope", "The requested scope is invalid, unknown, or malformed.")
    return scopes


async def token(request: Request) -> Response:
    server = server_of(request)
    try:
        params = await form(request)
        grant_type = params.get("grant_type")
        client = _client_auth(request, server, params)
        if grant_type == "authorization_code":
            code = params.get("code")
            grant = await run_in_threadpool(server.state.redeem_code, code) if isinstance(code, str) and code else None
            if grant is None or grant.client_id != client.client_id:
                raise OAuthError(
                    400,
                    "invalid_grant",
                    "The provided authorization grant is invalid, expired, revoked, or was issued to another client.",
                )
            if (params.get("redirect_uri") or grant.redirect_uri) != grant.redirect_uri:
                raise OAuthError(400, "invalid_grant", "redirect_uri: not the one the code was issued for")
            if not _pkce_ok(grant, params.get("code_verifier")):
                raise OAuthError(400, "invalid_grant", "code_verifier: does not match the code_challenge")
            account, scopes = grant.account, grant.scopes
        elif grant_type == "password":
            scopes = _scopes_for(params, client)
            name, password = params.get("username"), params.get("password")
            if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
                raise OAuthError(400, "invalid_request", "username and password are required")
            found = await run_in_threadpool(server.state.login, name)
            ok = await run_in_threadpool(check_password, None if found is None else found[1], password)
            if not ok or found is None:
                raise OAuthError(
                    400,
                    "invalid_grant",
                    "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                )
            account = found[0].id
        elif grant_type == "client_credentials":
            scopes, account = _scopes_for(params, client), None
        else:
            raise OAuthError(
                400, "unsupported_grant_type", "grant_type: expected authorization_code, password or client_credentials"
            )
    except OAuthError:
        raise
    except ApiError as exc:
        raise OAuthError(exc.status if exc.status != 422 else 400, "invalid_request", exc.message) from None
    access = await run_in_threadpool(server.state.issue_token, account, scopes, client.client_id)
    grant_info = server.state.grant(access)
    created = int(grant_info.created_at) if grant_info is not None else 0
    return json_response(
        {"access_token": access, "token_type": "Bearer", "scope": " ".join(sorted(scopes)), "created_at": created},
        headers={"Cache-Control": "no-store"},
    )


async def revoke(request: Request) -> Response:
    server = server_of(request)
    try:
        params = await form(request)
    except ApiError as exc:
        raise OAuthError(exc.status if exc.status != 422 else 400, "invalid_request", exc.message) from None
    client = _client_auth(request, server, params)
    value = params.get("token")
    if not isinstance(value, str) or not value:
        raise OAuthError(400, "invalid_request", "token: required")
    if not await run_in_threadpool(server.state.revoke_token, value, client.client_id):
        raise OAuthError(403, "unauthorized_client", "You are not authorized to revoke this token")
    forget(request, value)
    return json_response({})


ROUTES = [
    Route("/api/v1/apps", create_client, methods=["POST"]),
    Route("/oauth/authorize", authorize_page, methods=["GET"]),
    Route("/oauth/authorize", authorize_submit, methods=["POST"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
]
