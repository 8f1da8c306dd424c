"""Which deployment this process belongs to, so that deployments sharing a Redis stay apart.

Redis pub/sub ignores the database number of the URL: a staging hub on
``redis://host/5`` and a production hub on ``redis://host/6`` publishing on
the same channel receive each other's emits, and a user of one sees the
events of the user with the same id in the other. A deployment is the set
of nodes sharing one database, so the database names the deployment: its
physical identity (PostgreSQL's cluster identifier and the database's oid;
for SQLite the host and the file), never its URL, which nodes of one
deployment may spell differently. A copy restored elsewhere is another
deployment. The default message-queue channel is named after it, and the
queue canary carries it, so a node that hears another deployment on its
channel (two deployments given the same ``SOCKETIO_CHANNEL``) refuses to
start.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid

from sqlalchemy import text

from extensions import db


class SharedChannel(RuntimeError):
    """Another deployment's nodes are on this node's channel: serving would mix their users."""


def database_identity() -> str:
    """A string naming this database and no other, the same for every node using it."""
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        row = db.session.execute(text(
            "SELECT (SELECT system_identifier FROM pg_control_system()), oid "
            "FROM pg_database WHERE datname = current_database()")).one()
        db.session.rollback()
        return f"postgresql:{row[0]}:{row[1]}"
    if dialect == "sqlite":
        path = next((file for _, name, file in db.session.execute(text("PRAGMA database_list"))
                     if name == "main"), "")
        db.session.rollback()
        if not path:
            # An in-memory database lives and dies with this process: nobody shares it.
            return f"sqlite-memory:{uuid.uuid4().hex}"
        stat = os.stat(path)
        return f"sqlite:{socket.gethostname()}:{stat.st_dev}:{stat.st_ino}"
    raise RuntimeError(f"cannot tell {dialect} databases apart: set SOCKETIO_CHANNEL")


def deployment_id() -> str:
    """Short and opaque: it goes into channel names and onto the queue."""
    return hashlib.sha256(database_identity().encode()).hexdigest()[:16]


def channel_for(deployment: str) -> str:
    return f"hub-{deployment}"
