"""The live example server against its contract, bindings/openapi.yaml (schemathesis).

Every operation gets a few generated requests, valid and invalid; every
response must be no 5xx and conform to the contract (status code, content
type, body schema, headers).  Bounded: a handful of examples per operation,
well under a minute.  The endless stream endpoint is left out (its 401 and its
events are covered by test_server.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

ROOT = Path(__file__).resolve().parents[1]

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from twittercore.server.testing import running_server  # noqa: E402

SPEC = ROOT / "bindings" / "openapi.yaml"
ADMIN = "schema-admin"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
BUDGET = 30.0  # seconds for the whole run; each mode of each operation gets a share


def test_spec_lists_every_route():
    import yaml

    import twittercore.server.app as app

    spec = yaml.safe_load(SPEC.read_text())
    # A WebSocket route is documented as the GET its handshake is.
    served = {(r.path, m.lower()) for r in app.ROUTES for m in getattr(r, "methods", None) or {"GET"} if m != "HEAD"}
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
    assert served == documented


@pytest.mark.parametrize("backend", ["memory"])
def test_live_server_conforms(backend, tmp_path):
    schema = (
        schemathesis.openapi.from_path(str(SPEC))
        .exclude(path="/api/v1/streaming/user")
        .exclude(path="/api/v1/streaming")
    )
    with running_server(admin_token=ADMIN) as url:
        # Seed a little data so that ids in generated requests sometimes exist.
        with httpx.Client(base_url=url) as c:
            tokens = []
            for name in ("alice", "bob"):
                r = c.post("/api/v1/accounts", data={"username": name}, headers={"Authorization": f"Bearer {ADMIN}"})
                tokens.append(r.json()["access_token"])
            auth = {"Authorization": f"Bearer {tokens[0]}"}
            c.post("/api/v1/accounts/2/follow", headers=auth)
            for n in range(3):
                c.post("/api/v1/statuses", data={"status": f"seed {n}"}, headers=auth)

        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        share = BUDGET / (2 * len(operations))

        def checker(operation, mode, deadline):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=8,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                if time.monotonic() > deadline:
                    return  # this operation's share of the budget is spent
                case.call_and_validate(base_url=url, headers=auth, checks=CHECKS)

            return run

        failures = []
        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                try:
                    checker(operation, mode, time.monotonic() + share)()
                except Unsatisfiable:
                    pass  # nothing in this operation can be made invalid (e.g. no parameters)
                except Exception as exc:  # collect, so one run reports every broken operation
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
        assert not failures, "\n\n".join(failures)
