"""Forwarding to upstreams: plughost's own pooled, streaming HTTP/1.1 client.

``message`` turns an action's upstream directive into the bytes of a request head and
filters the headers that cross the gateway; ``client`` sends it over a pooled keep-alive
connection on the event loop's transports and parses the answer with llhttp (httptools),
handing the status, headers and body pieces to a :class:`~plughost.proxy.client.ResponseSink`
as they arrive.
"""

from .client import ResponseSink, UpstreamCall, UpstreamPool
from .message import Target, parse_target, request_head, response_headers

__all__ = [
    "ResponseSink",
    "Target",
    "UpstreamCall",
    "UpstreamPool",
    "parse_target",
    "request_head",
    "response_headers",
]
