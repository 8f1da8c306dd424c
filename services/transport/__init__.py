"""The Engine.IO / Socket.IO engine room; no domain code imports it."""
