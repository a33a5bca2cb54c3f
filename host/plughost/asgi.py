"""The ASGI entry point: ``uvicorn plughost.asgi:app`` (plughost.serving.asgi builds it)."""

from .serving.asgi import GatewayApp, app

__all__ = ["GatewayApp", "app"]
