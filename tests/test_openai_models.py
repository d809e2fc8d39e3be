"""OpenAIChat and OpenAIResponses through the real openai SDK against the scripted server."""

from __future__ import annotations

import asyncio
import json
import socket

import openai
import pytest

from kern.errors import ConfigurationError, ModelProviderError
from kern.models import get_model
from kern.models.base import ModelDelta, ModelResponse, ToolSpec
from kern.models.openai import OpenAIChat, OpenAIResponses
from kern.records import Message, ToolCall
from kern.testing.scripted_server import Reply, ToolCallReply, default_reply_text

MODEL_CLASSES = [OpenAIChat, OpenAIResponses]

ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)


@pytest.fixture(params=MODEL_CLASSES, ids=lambda cls: cls.__name__)
def model_class(request):
    return request.param


@pytest.fixture
def llm(model_class, scripted):
    return model_class(id="scripted", base_url=scripted.base_url, api_key="test")


def user(text: str) -> Message:
    return Message(role="user", content=text)


def conversation() -> list[Message]:
    return [
        Message(role="system", content="You are terse."),
        user("My name is Ada."),
        Message(role="assistant", content="Hello Ada."),
        user("What is my name?"),
    ]


EXPECTED = default_reply_text(
    [
        {"role": "user", "content": "My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
)


def split_stream(items) -> tuple[str, ModelResponse]:
    *deltas, final = items
    assert all(isinstance(d, ModelDelta) for d in deltas)
    assert isinstance(final, ModelResponse)
    return "".join(d.content for d in deltas), final


# --------------------------------------------------------------------------- construction


def test_the_documented_constructor_line_works_as_written():
    model = OpenAIChat(id="llama3.2:3b", base_url="http://localhost:11434/v1")
    assert model.id == "llama3.2:3b"
    assert model.base_url == "http://localhost:11434/v1"
    assert repr(model) == "OpenAIChat(id='llama3.2:3b')"
    assert OpenAIResponses().id == "gpt-4.1-mini"


def test_providers_resolve_to_the_two_classes():
    assert type(get_model("openai:gpt-4.1-mini")) is OpenAIChat
    assert type(get_model("openai-responses:gpt-5.2")) is OpenAIResponses
    assert (OpenAIChat.provider, OpenAIResponses.provider) == ("openai", "openai-responses")


# --------------------------------------------------------------------------- plain, stream, async


def test_response_carries_the_conversation(llm, scripted):
    result = llm.response(conversation())
    assert result.content == EXPECTED
    assert result.tool_calls == []
    assert result.model == "scripted"
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens == len(EXPECTED.split())
    assert len(scripted.model_requests()) == 1


def test_stream_yields_deltas_then_the_whole_response(llm):
    text, final = split_stream(list(llm.stream(conversation())))
    assert text == final.content == EXPECTED
    assert final.usage.output_tokens == len(EXPECTED.split())


async def test_aresponse(llm):
    result = await llm.aresponse(conversation())
    assert result.content == EXPECTED
    assert result.usage.input_tokens > 0


async def test_astream(llm):
    text, final = split_stream([item async for item in llm.astream(conversation())])
    assert text == final.content == EXPECTED
    assert final.usage.output_tokens > 0


def test_a_model_works_across_event_loops(llm):
    async def ask() -> str | None:
        return (await llm.aresponse([user("again")])).content

    assert asyncio.run(ask()) == asyncio.run(ask())


def test_settings_are_sent_with_the_api_specific_names(model_class, scripted):
    model = model_class(
        id="m", base_url=scripted.base_url, api_key="k", temperature=0.2, max_tokens=50
    )
    model.response([user("hi")])
    plain = model_class(id="m", base_url=scripted.base_url, api_key="k")
    plain.response([user("hi")])
    with_settings, without = scripted.model_requests()
    assert with_settings["temperature"] == 0.2
    limit = "max_tokens" if model_class is OpenAIChat else "max_output_tokens"
    assert with_settings[limit] == 50
    assert "temperature" not in without
    assert limit not in without
    assert "tools" not in without


# --------------------------------------------------------------------------- tools


def test_chat_tool_call_round_trip(scripted):
    model = OpenAIChat(id="m", base_url=scripted.base_url, api_key="k")
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 2, "b": 3})),
        Reply.text("The sum is 5."),
    )
    messages = [user("What is 2 + 3?")]
    first = model.response(messages, tools=[ADD])
    (call,) = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("add", {"a": 2, "b": 3})
    assert first.content is None

    messages += [first.as_message(), Message(role="tool", tool_call_id=call.id, content="5")]
    final = model.response(messages, tools=[ADD])
    assert final.content == "The sum is 5."

    sent = scripted.chat_requests()
    assert sent[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two numbers.",
                "parameters": ADD.parameters,
            },
        }
    ]
    assistant, tool = sent[1]["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "add", "arguments": call.arguments},
        }
    ]
    assert tool == {"role": "tool", "tool_call_id": call.id, "content": "5"}


def test_responses_tool_call_round_trip(scripted):
    model = OpenAIResponses(id="m", base_url=scripted.base_url, api_key="k")
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 2, "b": 3})),
        Reply.text("The sum is 5."),
    )
    messages = [Message(role="developer", content="Use tools."), user("What is 2 + 3?")]
    first = model.response(messages, tools=[ADD])
    (call,) = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("add", {"a": 2, "b": 3})

    messages += [first.as_message(), Message(role="tool", tool_call_id=call.id, content="5")]
    final = model.response(messages, tools=[ADD])
    assert final.content == "The sum is 5."

    sent = scripted.responses_requests()
    (tool_spec,) = sent[0]["tools"]
    assert tool_spec["type"] == "function"
    assert (tool_spec["name"], tool_spec["parameters"]) == ("add", ADD.parameters)
    assert sent[1]["input"] == [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"type": "function_call", "call_id": call.id, "name": "add", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.id, "output": "5"},
    ]


def test_streamed_tool_calls_are_assembled(llm, scripted):
    scripted.script(
        Reply.tool_calls(
            ToolCallReply(name="add", arguments={"a": 1, "b": 2}, id="call_a"),
            ToolCallReply(name="add", arguments={"a": 3, "b": 4}, id="call_b"),
            content="Adding.",
        )
    )
    text, final = split_stream(list(llm.stream([user("add twice")], tools=[ADD])))
    assert text == final.content == "Adding."
    assert final.tool_calls == [
        ToolCall(id="call_a", name="add", arguments=json.dumps({"a": 1, "b": 2})),
        ToolCall(id="call_b", name="add", arguments=json.dumps({"a": 3, "b": 4})),
    ]


async def test_async_streamed_tool_call(llm, scripted):
    scripted.script(Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 1, "b": 2})))
    items = [item async for item in llm.astream([user("add")], tools=[ADD])]
    _, final = split_stream(items)
    (call,) = final.tool_calls
    assert json.loads(call.arguments) == {"a": 1, "b": 2}


# --------------------------------------------------------------------------- errors


def test_scripted_error_becomes_model_provider_error(llm, scripted):
    scripted.script(Reply.error(status=500, message="the model fell over"))
    with pytest.raises(ModelProviderError) as caught:
        llm.response([user("hi")])
    message = str(caught.value)
    assert "500" in message
    assert "the model fell over" in message
    assert isinstance(caught.value.__cause__, openai.APIStatusError)


def test_error_while_streaming_becomes_model_provider_error(llm, scripted):
    scripted.script(Reply.error(status=400, message="bad request body"))
    with pytest.raises(ModelProviderError, match="bad request body"):
        list(llm.stream([user("hi")]))


async def test_async_error_becomes_model_provider_error(llm, scripted):
    scripted.script(Reply.error(status=404, message="no such model"))
    with pytest.raises(ModelProviderError, match="no such model"):
        await llm.aresponse([user("hi")])
    scripted.script(Reply.error(status=401, message="bad key"))
    with pytest.raises(ModelProviderError, match="401"):
        [item async for item in llm.astream([user("hi")])]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_unreachable_server_names_the_url_and_the_fix(model_class):
    url = closed_port_url()
    model = model_class(id="m", base_url=url, max_retries=0)
    with pytest.raises(ModelProviderError) as caught:
        model.response([user("hi")])
    assert url in str(caught.value)
    assert "base_url" in str(caught.value)
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


async def test_unreachable_server_async_stream(model_class):
    url = closed_port_url()
    model = model_class(id="m", base_url=url, max_retries=0)
    with pytest.raises(ModelProviderError, match=url):
        [item async for item in model.astream([user("hi")])]


def test_missing_key_and_base_url_is_a_configuration_error(model_class, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    model = model_class(id="gpt-4.1-mini")
    with pytest.raises(ConfigurationError) as caught:
        model.response([user("hi")])
    assert "OPENAI_API_KEY" in str(caught.value)
    assert "base_url" in str(caught.value)


async def test_missing_key_async_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await OpenAIResponses().aresponse([user("hi")])


def test_a_base_url_needs_no_key(model_class, scripted, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = model_class(id="llama3.2:3b", base_url=scripted.base_url)
    assert model.response([user("hi")]).content.startswith("[scripted model]")


def test_sdk_environment_variables_apply_without_arguments(model_class, scripted, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.base_url)
    assert model_class().response([user("hi")]).content.startswith("[scripted model]")
    assert scripted.model_requests()[0]["model"] == "gpt-4.1-mini"
