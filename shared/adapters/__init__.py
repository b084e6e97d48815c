"""Narrow interfaces we own over each SDK, returning our own types."""
