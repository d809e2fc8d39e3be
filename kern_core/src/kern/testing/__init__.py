"""kern's test kit, shipped with kern-core so plugin authors test exactly as kern does.

Install it with ``kern-core[testing]`` (pytest and pytest-asyncio).

- ``kern.testing.scripted_server``: an OpenAI-compatible HTTP server on loopback that answers
  from a script, so the real openai SDK runs without a network or a model.
- ``kern.testing.conformance``: the storage-backend conformance suite, one topic module per
  part of the contract (with ``kern.testing.isolation`` and ``kern.testing.turns``).
- ``kern.testing.capabilities``: what a backend declares it can do; the suite skips the rest.
- ``kern.testing.learning``, ``kern.testing.scenarios``, ``kern.testing.files``: the learning
  acceptance suite, end-to-end scenarios, and scenarios of file-based backends.
- ``kern.testing.pytest_plugin``: the shared fixtures (``scripted_server``, ``scripted``),
  loaded by pytest through kern-core's ``pytest11`` entry point.
"""
