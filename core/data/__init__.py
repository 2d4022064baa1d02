"""Manifest, decode-once cache and splits."""
