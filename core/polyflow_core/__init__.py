"""Polyflow core daemon."""
