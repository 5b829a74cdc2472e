"""The browser app: one index.html (the Vite build of frontend/) for /app/ and every route under it.

The app's own router draws the page; Django only hands out the shell and, through WhiteNoise,
its hashed assets under /static/app/. Review emails link to /app/versions/<id>, so every
/app/* path answers with the same shell rather than a 404.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Slipway</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>The browser app is not built</h1>
<p>Slipway's API is running (<a href="/api/docs/">API docs</a>), but the browser app's files are missing.
Build them with <code>make frontend</code> (it runs <code>npm ci</code> and <code>npm run build</code> in
<code>frontend/</code>; Node.js 20.19 or newer is needed), then reload this page.</p>
</body></html>
"""


def _index_html() -> bytes | None:
    """The built index.html: the fresh build in frontend/dist first (what a developer just
    built), then the collected copy in STATIC_ROOT (what an image ships)."""
    built = Path(settings.FRONTEND_DIST) / "index.html"
    if built.is_file():
        return built.read_bytes()
    if staticfiles_storage.exists("app/index.html"):
        with staticfiles_storage.open("app/index.html") as handle:
            return handle.read()
    return None


@require_safe
@ensure_csrf_cookie  # the sign-in form posts with this cookie's token
def spa(request: HttpRequest, path: str = "") -> HttpResponse:
    index = _index_html()
    if index is None:
        return HttpResponse(NOT_BUILT, status=503, content_type="text/html; charset=utf-8")
    response = HttpResponse(index, content_type="text/html; charset=utf-8")
    # The shell names the current build's hashed assets: always ask again.
    response["Cache-Control"] = "no-cache"
    return response
