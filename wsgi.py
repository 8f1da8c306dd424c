"""The gunicorn entry point.

``gunicorn -c gunicorn.conf.py wsgi:app``: one gevent WebSocket worker per process
(``services.transport.handler.HubWebSocketWorker``, gevent-websocket with the frame limit);
the config file starts each worker's node (heartbeat, dispatcher, housekeeping).
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
