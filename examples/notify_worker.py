"""A background worker that tails one sink's home and acts on each new event.

The shape of a notification or indexing worker: it remembers the position of
the last change it handled, and after a restart it resumes from there, so
nothing is skipped and nothing is handled twice (``tail(after=...)``).
Events arrive in the sink's home order, each source's in publish order (G1);
deletions arrive as :class:`twittercore.Deletion` notices.

    python examples/notify_worker.py --data /tmp/feed --sink 1 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import time

import twittercore


def run(target: str, sink: int, cursor_file: str, seconds: float) -> int:
    """Handle changes for ``seconds``; return how many were handled."""
    after = None
    if os.path.exists(cursor_file):
        with open(cursor_file) as f:
            after = json.load(f)["after"]
    handled = 0
    deadline = time.monotonic() + seconds
    with twittercore.open(target) as store:
        while time.monotonic() < deadline:
            # tail() ends when nothing arrives within the timeout: a chance to stop cleanly.
            for change in store.tail(sink, after=after, timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                if isinstance(change, twittercore.Deletion):
                    print(f"retract {change.id}", flush=True)
                else:
                    print(
                        f"notify {sink}: {change.source} posted {change.payload.decode(errors='replace')!r}", flush=True
                    )
                after = change.position
                handled += 1
                with open(cursor_file + ".tmp", "w") as f:  # replace atomically: a crash keeps the old cursor
                    json.dump({"after": after}, f)
                os.replace(cursor_file + ".tmp", cursor_file)
    return handled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="feed-data")
    parser.add_argument("--sink", type=int, required=True)
    parser.add_argument("--cursor", default="notify-cursor.json", help="where the last handled position is kept")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(f"handled {run(args.data, args.sink, args.cursor, args.seconds)} changes")
