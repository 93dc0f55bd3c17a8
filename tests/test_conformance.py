"""schemathesis (a real, independent fuzzer) against the served spec, with all its
checks: no 5xx; every answer as the spec says it is (status codes, content types,
headers, response schemas, 405 with Allow for a method a route does not take); every
schema-valid request accepted and every schema-invalid one refused, so the spec says
exactly what the server takes.

Bounded to well under a minute: a fixed seed (so a find is the same find on every run,
never a flake), a few examples per operation, a timeout per request. The subscribe
routes are long-lived streams and /healthz, /readyz live outside /v1 (test_protocol
covers them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Every check schemathesis has, the acceptance checks too (schema-valid requests are
# accepted, schema-invalid ones refused); tests/schemathesis.toml says where and why a
# status besides the defaults is the right answer.
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_the_spec_and_the_server_agree(api, tmp_path):
    base = str(api.base_url).rstrip("/")
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/spec.json",
        "--url",
        base,
        "-H",
        f"Authorization: Bearer {api.token}",
        "--checks",
        "all",
        "--mode",
        "all",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--exclude-path-regex",
        "subscribe",
        "--exclude-path",
        "/healthz",
        "--exclude-path",
        "/readyz",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its own cache folder goes there, not into the checkout
        check=False,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
