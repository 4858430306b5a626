"""Capture side: the mitmproxy addon, spool, compactor, capture schema, and the CLI."""
