"""The failure-point lab: stand a deployment up, drive it, break it on schedule, verify, report.

Deployments and fault schedules are TOML files (``lab/deployments``,
``lab/scenarios`` in the source checkout; the format is in ``docs/lab.md``):

    twittercore lab up lmdb-haproxy --dir /tmp/lab    # start it, print the URL, leave it running
    twittercore lab down --dir /tmp/lab               # stop it (from any shell)
    twittercore lab run kill-worker --out lab-report  # every deployment of the scenario, side by side

Modules: :mod:`.config` (the files), :mod:`.supervisor` (processes, state
file, teardown), :mod:`.faults`, :mod:`.proxy` (the link a fault can slow,
make lossy or cut), :mod:`.run` (one run) and :mod:`.report`.
"""
