"""Parts of the async throughput benchmark (``benchmarks/throughput.py``).

- ``model_server``: an asyncio OpenAI-compatible chat server in several processes on one
  port, so that the model is never what limits a batch of concurrent turns;
- ``ceiling``: that server's own ceiling, measured with a client that costs almost nothing;
- ``floors``: the async floor per backend (the raw async driver doing kern's storage work);
- ``chart``: the throughput-against-concurrency charts.
"""
