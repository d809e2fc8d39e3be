"""OpenAI models through the official ``openai`` SDK.

``OpenAIChat`` speaks Chat Completions (OpenAI, and any compatible server through
``base_url``: Ollama, vLLM...); ``OpenAIResponses`` speaks OpenAI's Responses API. Both
take the same arguments::

    OpenAIChat(id="llama3.2:3b", base_url="http://localhost:11434/v1")
    OpenAIResponses(id="gpt-5.2")
"""

from kern.models.openai._base import PLACEHOLDER_API_KEY, OpenAIModelBase
from kern.models.openai._chat import OpenAIChat
from kern.models.openai._responses import OpenAIResponses

__all__ = ["PLACEHOLDER_API_KEY", "OpenAIChat", "OpenAIModelBase", "OpenAIResponses"]
