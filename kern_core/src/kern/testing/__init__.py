"""kern's test kit, shipped with kern-core so plugin authors test exactly as kern does.

- ``kern.testing.scripted_server``: an OpenAI-compatible HTTP server on loopback that answers
  from a script, so the real openai SDK runs without a network or a model.
- ``kern.testing.conformance``: the storage-backend conformance suite (needs pytest).
"""
