"""The console server's application: ``create_app(engine, settings)`` mounts the API's
routers, maps errors to status codes and serves the OpenAPI 3.1 document at
/api/openapi.json. The web pages mount their own routers on the same app and take
``auth.require_user`` as the API does (docs/console.md)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI

from spendtrail.access.ratelimit import LoginLimiter
from spendtrail.api import errors, login, reads, writes
from spendtrail.api.settings import ApiSettings

OPENAPI_URL = "/api/openapi.json"


def create_app(engine: sa.Engine, settings: ApiSettings) -> FastAPI:
    from importlib.metadata import version

    app = FastAPI(
        title="spendtrail console API",
        version=version("spendtrail"),
        description="The books over HTTP: spend, exceptions, reconciliation, budgets, "
        "statements, prices, evidence and gateway keys, within the caller's "
        "role and scope.",
        openapi_url=OPENAPI_URL,
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the console works without one
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.login_limiter = LoginLimiter(settings.login_failures, settings.login_window_seconds)
    errors.install(app)
    for module in (login, reads, writes):
        app.include_router(module.router)
    return app
