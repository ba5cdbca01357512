"""The Mastodon routes, one module per resource; :data:`ROUTES` is their union, in match order."""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import accounts, instance, oauth, statuses

__all__ = ["ROUTES"]

ROUTES: list[BaseRoute] = [*statuses.ROUTES, *accounts.ROUTES, *oauth.ROUTES, *instance.ROUTES]
