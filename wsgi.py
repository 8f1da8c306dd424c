"""The gunicorn entry point.

``gunicorn -c gunicorn.conf.py -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker
-w 1 wsgi:app``; the config file starts this worker's node (heartbeat, housekeeping).
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
