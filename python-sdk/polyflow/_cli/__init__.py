"""Command lines: ``python flow.py ...`` (:mod:`.flow_cli`) and ``polyflow ...`` (:mod:`.main`).

Both import gRPC and the client only when a command needs the core, so ``--help`` and
argument errors stay quick.
"""
