"""The one emitter, rooms, the connection registry, presence and socket sessions."""
