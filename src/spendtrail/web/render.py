"""The pages' templates (Jinja2, ``templates/``) and how one is rendered: every page gets
the signed-in user, the navigation and the CSRF field its forms carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup, escape

from spendtrail.access.principal import Principal
from spendtrail.api.auth import CSRF_FIELD

HERE = Path(__file__).parent
PAGES = (
    ("overview", "Overview"),
    ("spend", "Spend"),
    ("exceptions", "Exceptions"),
    ("reconciliation", "Reconciliation"),
    ("budgets", "Budgets"),
    ("statements", "Statements"),
    ("prices", "Prices"),
    ("evidence", "Evidence"),
    ("keys", "Keys"),
)


@pass_context
def csrf_field(context) -> Markup:
    """The hidden field with the session's CSRF token (or, on the sign-in form, the token
    of its double-submit cookie)."""
    caller = getattr(context["request"].state, "caller", None)
    token = caller.csrf_token if caller is not None else context.get("login_csrf")
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(token or "")}">')


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["csrf_field"] = csrf_field


def render(
    request: Request,
    template: str,
    who: Principal | None,
    page: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.setdefault("flashes", [])
    context.setdefault("title", dict(PAGES).get(page, "spendtrail"))
    return templates.TemplateResponse(
        request,
        template,
        {"who": who, "page": page, "pages": PAGES, **context},
        status_code=status_code,
    )
