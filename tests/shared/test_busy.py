"""An exhausted database pool is an overload: 503 with Retry-After at once, not a 500 after 30 s of waiting."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from shared.errors import PROBLEM, install_problem_handlers


async def test_an_exhausted_pool_answers_503_with_retry_after() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a real fault")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/busy")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.headers["content-type"] == PROBLEM
        assert "QueuePool" not in response.text  # no internals leak
        assert (await client.get("/broken")).status_code == 500


async def test_a_database_that_is_away_answers_503_and_a_broken_statement_still_500() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/down")
    async def down() -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/restarted")
    async def restarted() -> None:
        raise sa_exc.DBAPIError("SELECT 1", {}, OSError("server closed the connection"), connection_invalidated=True)

    @app.get("/bug")
    async def bug() -> None:
        raise sa_exc.ProgrammingError("SELEC 1", {}, Exception("syntax error"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/down", "/restarted"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "5"
            assert "refused" not in response.text
        assert (await client.get("/bug")).status_code == 500
