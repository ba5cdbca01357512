"""The example Mastodon-compatible server: see README.md and app.py."""

from .app import create_app

__all__ = ["create_app"]
