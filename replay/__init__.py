"""Replay: drive captured callbacks through the wallet core and write decisions."""
