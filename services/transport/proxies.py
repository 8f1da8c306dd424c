"""Who the client is behind ``TRUST_PROXY_HEADERS`` trusted proxies: one policy for everything.

Each trusted proxy appends the address it was reached from to
``X-Forwarded-For``, so with ``N`` of them the client is the ``N``-th value
from the right; anything further left was written by the client and is never
believed. ``X-Forwarded-Proto`` is read the same way, so that a page served
over HTTPS by a TLS-terminating proxy is recognised as the hub's own origin.
``X-Forwarded-Host`` is not read: the proxy passes ``Host`` on, and a proxy
that forgot to overwrite that header would let clients choose it.

Werkzeug's ``ProxyFix`` rewrites the WSGI environ accordingly, once, before
Flask, Flask-Limiter and python-engineio see it: rate limits, per-address
socket caps, recorded connection addresses and origin checks all get the
same answer. Direct WebSocket sessions (``services.transport.engine_socket``) are
served before the WSGI stack, so they apply the same rewrite themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _no_response(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    return []


def _no_start(status: str, headers: list, exc_info: Any = None) -> None:
    return None


class ProxyPolicy:
    """``hops`` trusted proxies in front of the hub (0: clients connect directly)."""

    def __init__(self, hops: int) -> None:
        self.hops = hops
        self._rewrite = self.wrap(_no_response) if hops else None

    def wrap(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        """The app behind the rewrite, or the app itself when no proxy is trusted."""
        if not self.hops:
            return wsgi_app
        return ProxyFix(wsgi_app, x_for=self.hops, x_proto=self.hops, x_host=0)

    def apply(self, environ: dict[str, Any]) -> None:
        """Rewrite ``environ`` in place as ``wrap``'s middleware would, for requests served
        outside the WSGI stack. Call it once per request."""
        if self._rewrite is not None:
            self._rewrite(environ, _no_start)


def policy_of(app: Any) -> ProxyPolicy:
    """The policy ``create_app`` installed; none trusted for anything else."""
    extensions = getattr(app, "extensions", None)
    policy = extensions.get("hub_proxies") if isinstance(extensions, dict) else None
    return policy if isinstance(policy, ProxyPolicy) else ProxyPolicy(0)
