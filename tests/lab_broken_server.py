"""``twittercore serve`` with a deliberate bug, for the lab's test that a broken deployment is caught.

    python tests/lab_broken_server.py drop|reorder SERVE-ARGS...

drop: home pages leave out every status whose id is a multiple of 3 (an acknowledged post lost to
readers); reorder: home pages of two or more statuses come back with the first two swapped.
Only with --workers 1: uvicorn's worker processes would import the store unpatched.
"""

import sys

from twittercore import cli
from twittercore.backends.lmdb.store import LMDBStore

mode = sys.argv[1] if __name__ == "__main__" else "drop"
real_home = LMDBStore._home


def broken_home(self, sink, limit, lo, hi, oldest):
    page = real_home(self, sink, limit, lo, hi, oldest)
    if mode == "drop":
        return [e for e in page if e.id % 3]
    return [page[1], page[0], *page[2:]] if len(page) >= 2 else page


if __name__ == "__main__":  # run as a script by the lab tests; importing it changes nothing
    LMDBStore._home = broken_home
    sys.exit(cli.main(["serve", *sys.argv[2:]]))
