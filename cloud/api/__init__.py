"""The HTTP API over ClickHouse (docs/api.md): `create_app(settings, store, tokens)`."""

from cloud.api.app import create_app
from cloud.api.settings import ApiConfig, ApiSettings, load_api_config, resolve_tokens

__all__ = ["ApiConfig", "ApiSettings", "create_app", "load_api_config", "resolve_tokens"]
