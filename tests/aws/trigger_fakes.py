"""What the trigger function talks to, on loopback: a boto3-only Python, a stand-in Secrets Manager
(AWS cannot be had), a scripted service, and a runner that invokes the handler in a subprocess."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import threading
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HANDLER_DIR = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "fluxion_deploy" / "trigger"
# boto3 and what it imports: all the Lambda runtime gives the function besides the stdlib.
BOTO3_DISTRIBUTION = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "six", "urllib3")
TOKEN = "test-trigger-token-0123456789"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fluxion/trigger-token-AbCdEf"

RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import handler
for event in json.loads(sys.stdin.read()):
    try:
        print(json.dumps({"ok": handler.handler(event, None)}))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def make_boto3_only_venv(root: Path) -> Path:
    """A virtual environment whose only packages are boto3 and its dependencies (linked from
    this one); returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    site = next((root / "lib").glob("python3*/site-packages"))
    packages = root / "boto3-only"
    packages.mkdir()
    for name in BOTO3_DISTRIBUTION:
        origin = Path(str(importlib.import_module(name).__file__))
        source = origin.parent if origin.name == "__init__.py" else origin
        (packages / source.name).symlink_to(source)
    (site / "boto3_only.pth").write_text(str(packages) + "\n")
    return root / "bin" / "python"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ScriptedService:
    """A service that answers each POST with ``answer(request)`` and records the request."""

    answer: Callable[[Recorded], tuple[int, dict[str, Any]]]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: dict[str, Any], content_type: str) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the function's timeout) is expected here, not an error."""


@contextmanager
def _serve(handler_class: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def scripted_service(
    answer: Callable[[Recorded], tuple[int, dict[str, Any]]],
) -> Iterator[ScriptedService]:
    service = ScriptedService(answer)

    class Handler(_Quiet):
        def do_POST(self) -> None:
            body = json.loads(self._body() or b"null")
            request = Recorded(self.path, dict(self.headers.items()), body)
            service.requests.append(request)
            status, payload = service.answer(request)
            self._send(status, payload, "application/json")

    with _serve(Handler) as url:
        service.url = url
        yield service


@dataclass
class FakeSecrets:
    url: str = ""
    calls: list[str] = field(default_factory=list)


@contextmanager
def fake_secrets_manager(secrets: dict[str, str]) -> Iterator[FakeSecrets]:
    """Secrets Manager's GetSecretValue, as boto3 calls it (JSON 1.1 over POST)."""
    fake = FakeSecrets()

    class Handler(_Quiet):
        def do_POST(self) -> None:
            request = json.loads(self._body())
            target = self.headers.get("X-Amz-Target", "")
            fake.calls.append(target)
            secret_id = request.get("SecretId")
            if target != "secretsmanager.GetSecretValue" or secret_id not in secrets:
                error = {"__type": "ResourceNotFoundException", "message": "not found"}
                self._send(400, error, "application/x-amz-json-1.1")
                return
            answer = {
                "ARN": secret_id,
                "Name": "fluxion/trigger-token",
                "VersionId": "v1",
                "SecretString": secrets[secret_id],
                "CreatedDate": 1767225600.0,
            }
            self._send(200, answer, "application/x-amz-json-1.1")

    with _serve(Handler) as url:
        fake.url = url
        yield fake


def invoke(
    python: Path,
    events: list[dict[str, Any]],
    *,
    service_url: str,
    secrets_url: str,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Invoke the handler once per event, in one process (one Lambda execution environment)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": secrets_url,
        "FLUXION_SERVICE_URL": service_url,
        "FLUXION_TOKEN_SECRET_ARN": SECRET_ARN,
        "FLUXION_TRIGGER_TIMEOUT": str(timeout),
    }
    done = subprocess.run(
        [str(python), "-I", "-c", RUNNER, str(HANDLER_DIR)],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def fire_event(
    schedule: str = "inventory",
    job: str = "inventory",
    scheduled_time: str = "2026-01-05T14:00:00Z",
    locations: list[str] | None = None,
) -> dict[str, Any]:
    """The Scheduler input the CDK app deploys, with the placeholders filled in."""
    return {
        "schedule": schedule,
        "job": job,
        "scheduled_time": scheduled_time,
        "locations": locations,
        "execution_id": "exec-1",
        "attempt": "1",
    }


@contextmanager
def served_on_loopback(app: Any) -> Iterator[str]:
    """An ASGI app served by a real uvicorn on a free loopback port; yields its base URL."""
    import time

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
