"""Domain code of the core: plain Python objects and the rules that act on them.

Nothing in this package imports gRPC or protobuf. The servicers translate wire messages into
these objects (see ``polyflow_core.services``) and call in here.
"""
