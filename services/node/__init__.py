"""This process as a node of the hub: runtime, heartbeats, health, diagnostics."""
