"""Polyflow SDK."""
