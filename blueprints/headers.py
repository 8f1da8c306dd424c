"""Security headers on every answer: what the pages may load, and who may frame them.

The pages load only their own scripts, styles and the vendored libraries, and
open sockets only to this hub, so the policy allows exactly ``'self'`` (which
covers ``ws:``/``wss:`` to the same host under CSP 3): an injected inline
script or event handler does not run, and no other site may frame the pages to
trick a signed-in user into clicking. JSON answers get the same headers, which
cost nothing and keep a browser from sniffing them into HTML.
"""

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
