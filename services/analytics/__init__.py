"""Live analytics: the figures and their publisher."""
