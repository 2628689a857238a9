"""The web console (docs/console.md, "The web console"): server-rendered pages at ``/`` over
the same console operations as the HTTP API, on the API's sign-in, sessions and CSRF check.
A face: it parses a request, calls ``spendtrail.console`` for the signed-in user and renders.

- ``pages.py`` — the pages: overview, spend explorer and events, exceptions, reconciliation,
  budgets, statements, prices, evidence, gateway keys; each form post and its outcome.
- ``session.py`` — signing in and out; ``page_user``, the pages' ``require_user``; what a
  page shows once after a redirect (a new key's secret).
- ``render.py`` — how a page is rendered, with the CSRF field every form has.
- ``templates/`` — the Jinja2 templates, one per page, and their shared macros.
- ``charts.py`` — inline SVG charts (stacked bars by day, budget burn-down), each with a
  title, a description and its figures as a table beside it.
- ``static/`` — ``console.css``, the one stylesheet; no script, no CDN.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from spendtrail.web import pages, session
from spendtrail.web.render import HERE, render


def mount(app: FastAPI) -> None:
    """Add the pages, the stylesheet and their error pages to the console's app."""
    app.state.shown_once = session.ShownOnce()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(session.router)
    app.include_router(pages.router)

    @app.exception_handler(session.SignInFirst)
    async def sign_in_first(request: Request, error: session.SignInFirst) -> RedirectResponse:
        target = request.url_for("page-login").include_query_params(next=error.path)
        return RedirectResponse(str(target), status_code=303)

    @app.exception_handler(session.PageRefused)
    async def page_refused(request: Request, error: session.PageRefused) -> HTMLResponse:
        return render(
            request, "refused.html", None, status_code=403, title="Refused", error=str(error)
        )
