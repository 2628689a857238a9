"""`spendtrail serve`: the console's HTTP API on the ledger, in this process (uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from spendtrail.cli.common import console, ledger, settings


def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind; loopback unless you mean to expose it (put TLS in front)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8700,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            help="Mark the session cookie Secure even on plain http (behind a TLS proxy)."
        ),
    ] = False,
    trusted_user_header: Annotated[
        str | None,
        typer.Option(
            help="SSO mode: trust this request header as the user's name. Only behind a proxy "
            "that sets it and strips it from clients."
        ),
    ] = None,
) -> None:
    """Serve the web console (/) and its API (/api/v1, OpenAPI at /api/openapi.json) until
    interrupted."""
    import uvicorn

    from spendtrail.api.app import create_app
    from spendtrail.api.settings import ApiSettings
    from spendtrail.web import mount

    overrides: dict[str, object] = {}
    if secure_cookies:
        overrides["secure_cookies"] = True
    if trusted_user_header:
        overrides["trusted_user_header"] = trusted_user_header
    app = create_app(ledger(), ApiSettings.from_settings(settings(), **overrides))
    mount(app)
    console.print(
        f"spendtrail console on http://{host}:{port}/ (API: /api/v1, OpenAPI: "
        f"/api/openapi.json); Ctrl-C stops it",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)
