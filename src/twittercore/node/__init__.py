"""The decentralised mode: symmetric ``twittercore node`` processes, each hosting its own users (docs/nodes.md).

``chain.py`` (hash chains, the hybrid logical clock, merge keys), ``store.py``
(the node's durable SQLite state), ``core.py`` (publish, receive, watermark,
pushes, anti-entropy), ``app.py`` (HTTP), ``cli.py`` (``twittercore node``).
"""
