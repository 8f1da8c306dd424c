"""Metrics, traffic counts and log lines: what the hub tells its operators."""
