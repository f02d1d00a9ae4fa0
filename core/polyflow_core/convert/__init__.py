"""Converting artifact values between languages (``DatastoreService.ConvertBlob``).

Decoding a language-native encoding (``pickle-v5``, ``rds``) runs code chosen by whoever
wrote the value, so it never happens inside the daemon (DESIGN.md §3). The daemon keeps a
small pool of **converter processes** (``python -m polyflow_core.convert``), hands each one
the encoded bytes of a value and gets the bytes of the value in the asked encoding back; it
then stores the result by its digest and remembers the conversion.

- :mod:`polyflow_core.convert.service`: the daemon side: request checks, the cache, the
  process pool (no gRPC, no rpy2);
- :mod:`polyflow_core.convert.protocol`: the framing of requests and replies on the pipes;
- :mod:`polyflow_core.convert.codecs`: the ``json`` and ``pickle-v5`` byte formats
  (``docs/datastore.md``), written again here because the core imports nothing of the SDK;
- :mod:`polyflow_core.convert.values`: R values to Python values and back, with rpy2
  (imported only inside converter processes);
- ``python -m polyflow_core.convert``: the converter process itself.

Importing this package imports neither rpy2 nor R.
"""

from __future__ import annotations

__all__: list[str] = []
