"""The interface layer: HTTP blueprints and the Socket.IO namespace, kept thin."""
