"""`/live`: the page a person watches (devices, health, last seen, recent readings drawn
as they arrive). The page itself holds no data and needs no token; its script reads the
data endpoints with the bearer token from the URL fragment or asked for once."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["live"])

_PAGE = files("cloud.api").joinpath("static/live.html")


@router.get("/live", include_in_schema=False, response_class=HTMLResponse)
def live() -> HTMLResponse:
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"))
