"""Serving requests: the gateway a configuration builds (routes, chains), the one request
pipeline every request goes through, the ASGI application and plughost's HTTP protocol."""
