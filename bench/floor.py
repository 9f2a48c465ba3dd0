"""``python -m bench.floor --kind asgi|fastapi``: the floor under the trigger API's latency.

A server that answers ``POST /api/etl/sync`` with a fixed JSON answer and does nothing else, served
the way ``fluxion-etl serve`` serves the API (uvicorn with its default event loop and HTTP parser,
its writes coalesced as ``serve``'s are, the same listening socket): ``asgi`` is a bare ASGI app,
``fastapi`` one FastAPI route with a body model and the ``Idempotency-Key`` header.
``bench.service --floors`` drives them with the same callers as the real API, so that its latency
can be read against what this machine gives to a server doing no work at all.
"""

from __future__ import annotations

import argparse
import sys
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from fluxion_etl.api.writes import coalesced
from fluxion_etl.cli.service import listening_socket

ANSWER = b'{"success":true,"message":"floor","status":"running","run_id":null}'
SERVING = "fluxion-etl serving on "  # what bench.service waits for


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request and answers ``ANSWER`` to any path."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


class Body(BaseModel):
    ubicacion_id: str | None = None


class Answer(BaseModel):
    success: bool
    message: str
    status: str
    run_id: int | None = None


def with_fastapi() -> FastAPI:
    app = FastAPI()

    @app.post("/api/etl/sync", response_model=Answer)
    async def sync(
        body: Body | None = None,
        key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Answer:
        return Answer(success=True, message="floor", status="running")

    @app.get("/api/etl/runs")
    async def runs() -> dict[str, list[int]]:
        return {"runs": []}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--kind", choices=("asgi", "fastapi"), required=True)
    args = parser.parse_args()
    app = bare if args.kind == "asgi" else with_fastapi()
    sock = listening_socket("127.0.0.1")
    sock.bind(("127.0.0.1", 0))
    print(f"{SERVING}http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    config.load()
    config.http_protocol_class = coalesced(config.http_protocol_class)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
