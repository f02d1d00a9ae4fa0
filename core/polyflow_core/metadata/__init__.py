"""Metadata back-ends: where runs, tasks, attempts and artifact references are recorded."""
