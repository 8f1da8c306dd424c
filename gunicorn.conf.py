"""gunicorn settings: one gevent WebSocket worker per process, each a node of the hub."""

worker_class = "services.transport.handler.HubWebSocketWorker"
workers = 1
graceful_timeout = 10


def post_worker_init(worker):
    """Start this worker's node once the worker owns its event loop, and log its settings."""
    from app import log_settings
    from services.node.runtime import NodeRuntime, default_node_id

    app = worker.wsgi
    addresses = [sock.getsockname() for sock in worker.sockets]
    port = addresses[0][1] if addresses and isinstance(addresses[0], tuple) else None
    worker.hub_node = NodeRuntime(app, app.config.get("NODE_ID") or default_node_id(port))
    worker.hub_node.start()
    log_settings(app)


def worker_exit(server, worker):
    node = getattr(worker, "hub_node", None)
    if node is not None:
        node.stop()
