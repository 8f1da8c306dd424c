"""marshmallow schemas: every REST body, every event payload and every outgoing shape."""
