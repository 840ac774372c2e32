"""The web page (DESIGN §12) and the API's reference, served offline: our own files from
``src/agentcell/web``, and named files of the npm packages ``scripts/setup`` installs into
``web/node_modules`` (no CDN at run time)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from agentcell.api.deps import SettingsDep
from agentcell.api.origins import page_origin, preview_origin
from agentcell.api.security import page_policy
from agentcell.errors import NotFound

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parents[2] / "web"
# What the page and the docs load from the packages: our name -> (package file, type).
VENDOR = {
    "dompurify.js": ("dompurify/dist/purify.es.mjs", "text/javascript"),
    "marked.js": ("marked/lib/marked.esm.js", "text/javascript"),
    "xterm.js": ("@xterm/xterm/lib/xterm.mjs", "text/javascript"),
    "xterm.css": ("@xterm/xterm/css/xterm.css", "text/css"),
    "xterm-fit.js": ("@xterm/addon-fit/lib/addon-fit.mjs", "text/javascript"),
    "fflate.js": ("fflate/esm/browser.js", "text/javascript"),
    "swagger-ui.js": ("swagger-ui-dist/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui-dist/swagger-ui.css", "text/css"),
    "redoc.js": ("redoc/bundles/redoc.standalone.js", "text/javascript"),
}
# The reference pages' libraries style their elements inline, and redoc runs a worker.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; font-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def static_files() -> StaticFiles:
    """The page's own files, mounted at /static."""
    return StaticFiles(directory=PAGE, check_dir=False)


@router.get("/", response_model=None)
async def page(request: Request) -> Response:
    """The page, unless this is the preview address (no sign-in there: api/origins.py)."""
    if (origin := page_origin(request)) is not None:
        return RedirectResponse(origin + "/", status_code=307)
    policy = page_policy(frame_src=preview_origin(request) or "")
    return FileResponse(
        PAGE / "index.html", media_type="text/html", headers={"content-security-policy": policy}
    )


@router.get("/vendor/{name}")
async def vendor(name: str, settings: SettingsDep) -> FileResponse:
    if name not in VENDOR:
        raise NotFound(f"no such file of the page's packages: {name[:40]!r}")
    path, media_type = VENDOR[name]
    file = settings.web_dir / "node_modules" / path
    if not file.is_file():
        raise NotFound(
            f"the page's package file {path} is missing",
            hint="run scripts/setup (it installs the page's packages with npm)",
        )
    return FileResponse(file, media_type=media_type, headers={"cache-control": "max-age=3600"})


def _docs(name: str) -> FileResponse:
    headers = {"content-security-policy": DOCS_POLICY}
    return FileResponse(PAGE / name, media_type="text/html", headers=headers)


@router.get("/docs")
async def docs() -> FileResponse:
    """The API's reference (Swagger UI), from local files."""
    return _docs("docs.html")


@router.get("/redoc")
async def redoc() -> FileResponse:
    return _docs("redoc.html")
