"""/docs (Swagger UI) and /redoc with their scripts, styles and icon served by the API itself
from the installed fastapi-offline package, so that they work with no internet access."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_PREFIX = "/docs/assets"
# The only files served, with their media types (a fixed list: no path from the request
# reaches the file system).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
TITLE = "loyalty-engine POS API"
router = APIRouter(include_in_schema=False)


@cache
def asset(name: str) -> bytes:
    """An asset's bytes, read once from the package that ships them."""
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI over /openapi.json, from local assets (no validator badge: it would call
    out to swagger.io)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None})


@router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc over /openapi.json, from local assets and without web fonts."""
    return get_redoc_html(
        openapi_url="/openapi.json", title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{ASSETS_PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PREFIX}/favicon.png", with_google_fonts=False)


@router.api_route(ASSETS_PREFIX + "/{name}", methods=["GET", "HEAD"])
def docs_asset(name: str) -> Response:
    """One of the docs' files; cached by browsers for a day (they change with the package)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no docs asset {name!r}")
    return Response(asset(name), media_type=media_type,
                    headers={"Cache-Control": "public, max-age=86400"})
