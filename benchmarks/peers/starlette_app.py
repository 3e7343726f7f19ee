"""A do-nothing Starlette app (orjson reply), the framework row beside the bare ASGI do-nothing app."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def score(request: Request) -> Response:
    await request.body()
    return Response(orjson.dumps({"result": ["no"]}), media_type="application/json")


app = Starlette(routes=[Route("/score", score, methods=["POST"])])
