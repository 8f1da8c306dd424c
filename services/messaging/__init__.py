"""Bulk SMS: messages, their payloads, the send queue, dispatcher and providers."""
