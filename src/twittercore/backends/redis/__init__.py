"""The scale-out backend on Redis and Redis Cluster (``pip install 'twittercore[redis]'``)."""

from .store import RedisStore

__all__ = ["RedisStore"]
