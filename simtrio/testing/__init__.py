"""Helpers for testing code that uses simtrio: fixtures and a pytest plugin."""
