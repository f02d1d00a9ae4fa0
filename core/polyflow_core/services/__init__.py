"""Glue between the wire layer and the domain: protobuf <-> plain-object conversion.

Modules here may import the generated messages (``polyflow.api.*``); the domain code may not.
"""
