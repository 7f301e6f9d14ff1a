"""Operations, open without a token: `/healthz` for probes, `/metrics` for Prometheus.
Neither returns data: `/healthz` says whether ClickHouse answers, `/metrics` counts
requests per route."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from cloud.api.deps import StoreDep
from cloud.store import StoreError

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str
    engine: str
    detail: str = ""


@router.get(
    "/healthz",
    summary="Whether the API and its database answer",
    operation_id="healthz",
    responses={503: {"model": Health, "description": "the database does not answer"}},
)
def healthz(store: StoreDep, response: Response) -> Health:
    try:
        store.query("SELECT 1")
    except StoreError as e:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", engine=store.engine, detail=str(e)[:500])
    return Health(status="ok", engine=store.engine)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
