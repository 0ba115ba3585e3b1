"""Fake platform servers that speak the real wire formats, for tests."""
