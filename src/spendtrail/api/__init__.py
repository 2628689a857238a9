"""The HTTP API (a face, docs/console.md): FastAPI routes under /api/v1 that parse, call one
``spendtrail.console`` function with the caller and return its typed value; OpenAPI 3.1 at
/api/openapi.json is generated from those types.

- ``app.py`` — ``create_app(engine, settings)``: the routers, errors and OpenAPI document.
- ``settings.py`` — ``ApiSettings``: cookies, sessions, login limits, trusted-header SSO.
- ``auth.py`` — who a request is (token, session cookie, trusted header) and the CSRF check;
  ``require_user`` is the dependency every route and page takes.
- ``login.py`` — password login and logout, rate-limited.
- ``errors.py`` — errors to status codes (401, 403, 404, 400, 429).
- ``reads.py`` — the GET routes.
- ``writes.py`` — the POST and PUT routes, uploads included.
"""
