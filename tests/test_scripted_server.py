"""The scripted OpenAI-compatible server, driven by the real openai SDK over loopback.

The SDK clients here validate responses strictly against the SDK's own types, so a wire
format the SDK would only half-parse fails the test.
"""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
import threading
import time

import openai
import pytest

from kern.testing.scripted_server import (
    Reply,
    ScriptedServer,
    ToolCallReply,
    default_reply_text,
    embed_text,
    request_messages,
)


def strict_client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", _strict_response_validation=True)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- default reply


def test_default_reply_for_a_first_message():
    text = default_reply_text(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    )
    assert text == (
        '[scripted model] You said: "Hello". '
        "This is the first message of our conversation I can see."
    )


def test_default_reply_lists_every_earlier_user_message_in_order():
    text = default_reply_text(
        [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hi Ada."},
            {"role": "user", "content": "I like tea."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "What is my name?"},
        ]
    )
    assert text == (
        '[scripted model] You said: "What is my name?". Earlier in this conversation you '
        'said: "My name is Ada."; "I like tea.".'
    )


def test_unscripted_chat_request_gets_the_default_reply(scripted):
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
    ]
    completion = strict_client(scripted).chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == (
        '[scripted model] You said: "two". Earlier in this conversation you said: "one".'
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "m"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_unscripted_responses_request_sees_instructions_and_input_items(scripted):
    response = strict_client(scripted).responses.create(
        model="m",
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    )
    assert response.output_text == default_reply_text(
        [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    )
    assert response.status == "completed"
    assert response.usage.input_tokens > 0


def test_request_messages_gives_one_view_of_both_request_formats():
    chat = request_messages({"messages": [{"role": "user", "content": "hi"}]})
    responses = request_messages({"instructions": "sys", "input": "hi"})
    assert chat == [{"role": "user", "content": "hi"}]
    assert responses == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]


# --------------------------------------------------------------------------- scripting


def test_scripted_replies_are_consumed_in_order_then_the_default_answers(scripted):
    client = strict_client(scripted)
    scripted.script(Reply.text("first"), "second")

    def ask() -> str | None:
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        return completion.choices[0].message.content

    assert [ask(), ask()] == ["first", "second"]
    assert ask().startswith("[scripted model]")
    assert scripted.pending == 0


def test_a_responder_answers_from_the_request():
    def responder(body):
        return f"you sent {len(request_messages(body))} messages"

    with ScriptedServer(responder=responder) as server:
        client = strict_client(server)
        completion = client.chat.completions.create(
            model="m",
            messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        )
        assert completion.choices[0].message.content == "you sent 2 messages"
        server.script(Reply.text("scripted wins"))
        response = client.responses.create(model="m", input="u")
        assert response.output_text == "scripted wins"


def test_requests_are_recorded_and_cleared(scripted):
    client = strict_client(scripted)
    client.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}])
    client.responses.create(model="b", input="y")
    client.embeddings.create(model="e", input="z", encoding_format="float")

    assert [(r.method, r.path) for r in scripted.requests] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/embeddings"),
    ]
    assert [b["model"] for b in scripted.model_requests()] == ["a", "b"]
    assert scripted.chat_requests()[0]["messages"] == [{"role": "user", "content": "x"}]
    assert scripted.responses_requests()[0]["input"] == "y"

    scripted.script("unused")
    scripted.clear()
    assert scripted.requests == []
    assert scripted.pending == 0


def test_tool_call_reply_in_a_chat_completion(scripted):
    scripted.script(
        Reply.tool_calls(
            ToolCallReply(name="add", arguments={"a": 1, "b": 2}, id="call_1"),
            ToolCallReply(name="now", arguments="{}"),
        )
    )
    completion = strict_client(scripted).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "add"}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls[:1]] == [
        ("call_1", "add", {"a": 1, "b": 2})
    ]
    assert calls[1].function.name == "now"
    assert calls[1].id.startswith("call_")


def test_tool_call_reply_in_a_response(scripted):
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 1}), content="Let me add.")
    )
    response = strict_client(scripted).responses.create(model="m", input="add")
    kinds = [item.type for item in response.output]
    assert kinds == ["message", "function_call"]
    call = response.output[1]
    assert (call.name, json.loads(call.arguments)) == ("add", {"a": 1})
    assert call.call_id.startswith("call_")
    assert response.output_text == "Let me add."


# --------------------------------------------------------------------------- streaming


def test_chat_stream_sends_content_deltas_usage_and_done(scripted):
    scripted.script(Reply.text("Hello there, streaming world."))
    chunks = list(
        strict_client(scripted).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there, streaming world."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_stream_without_include_usage_has_no_usage_chunk(scripted):
    chunks = list(
        strict_client(scripted).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_chat_stream_tool_call_deltas_accumulate_in_the_sdk_helper(scripted):
    scripted.script(Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 1, "b": 2})))
    with strict_client(scripted).chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "add"}]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "add"
    assert json.loads(call.function.arguments) == {"a": 1, "b": 2}


def test_responses_stream_satisfies_the_sdk_stream_parser(scripted):
    scripted.script(
        Reply.tool_calls(ToolCallReply(name="add", arguments={"a": 1}), content="Adding now.")
    )
    with strict_client(scripted).responses.stream(model="m", input="add") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.output_item.done",
    ):
        assert expected in types
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Adding now."
    assert final.output_text == "Adding now."
    assert [(i.type, getattr(i, "name", None)) for i in final.output] == [
        ("message", None),
        ("function_call", "add"),
    ]
    assert final.usage.output_tokens > 0


async def test_async_sdk_client_streams_from_the_server(scripted):
    client = openai.AsyncOpenAI(base_url=scripted.base_url, api_key="test")
    stream = await client.responses.create(model="m", input="async hello", stream=True)
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == default_reply_text([{"role": "user", "content": "async hello"}])


# --------------------------------------------------------------------------- embeddings, models


def test_embeddings_are_deterministic_normalised_and_similar_for_shared_words(scripted):
    client = openai.OpenAI(base_url=scripted.base_url, api_key="test")  # base64 by default
    result = client.embeddings.create(
        model="text-embedding-3-small",
        input=["the cat sat on the mat", "a cat on a mat", "quantum chromodynamics"],
    )
    cat, cat2, physics = (d.embedding for d in result.data)
    assert [d.index for d in result.data] == [0, 1, 2]
    assert len(cat) == 64
    assert math.isclose(cosine(cat, cat), 1.0, rel_tol=1e-5)
    assert cosine(cat, cat2) > cosine(cat, physics)
    assert result.usage.prompt_tokens == 13

    again = client.embeddings.create(model="e", input="the cat sat on the mat")
    assert again.data[0].embedding == cat


def test_embeddings_honour_dimensions_and_float_format(scripted):
    result = strict_client(scripted).embeddings.create(
        model="e", input="Hello, hello world", dimensions=16, encoding_format="float"
    )
    (data,) = result.data
    assert data.embedding == pytest.approx(embed_text("hello hello world", 16))
    assert len(data.embedding) == 16


def test_models_are_listed(scripted):
    ids = [m.id for m in strict_client(scripted).models.list()]
    assert "gpt-4.1-mini" in ids


# --------------------------------------------------------------------------- errors


def test_scripted_error_is_returned_once_in_openai_error_shape(scripted):
    scripted.script(Reply.error(status=500, message="the model fell over"))
    client = openai.OpenAI(base_url=scripted.base_url, api_key="test")  # default retries
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 500
    assert caught.value.message.endswith("the model fell over")
    assert caught.value.type == "server_error"
    assert len(scripted.requests) == 1  # not retried

    scripted.script(Reply.error(status=429, message="slow down"))
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input="x", stream=True)


def test_unknown_path_is_a_json_404(scripted):
    conn = http.client.HTTPConnection("127.0.0.1", scripted.port, timeout=5)
    conn.request("POST", "/v1/nothing", body="{}", headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 404
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    assert "/v1/nothing" in body["error"]["message"]
    conn.close()


def test_one_connection_serves_many_requests(scripted):
    conn = http.client.HTTPConnection("127.0.0.1", scripted.port, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body=body)
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["object"] == "chat.completion"
    conn.close()


def test_concurrent_requests_each_get_their_own_answer(scripted):
    client = strict_client(scripted)
    answers: dict[int, str | None] = {}

    def ask(i: int) -> None:
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"message {i}"}]
        )
        answers[i] = completion.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {
        i: default_reply_text([{"role": "user", "content": f"message {i}"}]) for i in range(8)
    }


def test_stopped_server_refuses_connections():
    server = ScriptedServer().start()
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    client.models.list()
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


# --------------------------------------------------------------------------- CLI


def test_cli_prints_its_base_url_and_serves():
    proc = subprocess.Popen(
        [sys.executable, "-m", "kern.testing.scripted_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=10)
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "ping"}]
        )
        assert completion.choices[0].message.content == default_reply_text(
            [{"role": "user", "content": "ping"}]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == 0


# --------------------------------------------------------------------------- misbehaving


MEMORY_CALL = ToolCallReply(
    "save_user_memories", {"memories": [{"content": "Ada likes tea", "topics": ["tea"]}]}
)


def test_with_value_puts_a_wrong_type_at_a_dotted_path():
    wrong = MEMORY_CALL.with_value("memories.0.topics", "tea")
    assert json.loads(wrong.arguments_json()) == {
        "memories": [{"content": "Ada likes tea", "topics": "tea"}]
    }
    assert MEMORY_CALL.arguments["memories"][0]["topics"] == ["tea"]  # the original is kept
    assert json.loads(MEMORY_CALL.with_value("extra", 1).arguments_json())["extra"] == 1


def test_without_removes_fields_and_list_items():
    missing = MEMORY_CALL.without("memories.0.content")
    assert json.loads(missing.arguments_json()) == {"memories": [{"topics": ["tea"]}]}
    assert json.loads(MEMORY_CALL.without("memories.0").arguments_json()) == {"memories": []}
    with pytest.raises(ValueError, match=r"nothing at 'memories\.3'"):
        MEMORY_CALL.without("memories.3")
    with pytest.raises(ValueError, match="dict"):
        ToolCallReply("f", "{}").without("a")


def test_broken_arguments_are_not_json_and_reach_the_client_as_sent(scripted):
    broken = MEMORY_CALL.broken()
    assert isinstance(broken.arguments, str)
    with pytest.raises(ValueError):
        json.loads(broken.arguments)
    assert ToolCallReply("f").broken().arguments == "{"

    scripted.script(Reply.tool_calls(broken), Reply.tool_calls(broken))
    completion = strict_client(scripted).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].message.tool_calls[0].function.arguments == broken.arguments
    with strict_client(scripted).chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == broken.arguments


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_delayed_reply_is_sent_late_and_holds_no_other_request(scripted, api):
    client = strict_client(scripted)

    def ask() -> str | None:
        if api == "chat":
            messages = [{"role": "user", "content": "x"}]
            return (
                client.chat.completions.create(model="m", messages=messages)
                .choices[0]
                .message.content
            )
        return client.responses.create(model="m", input="x").output_text

    assert Reply.text("late").after(0.3).delay == 0.3
    with pytest.raises(ValueError):
        Reply.text("x").after(-1)
    scripted.script(Reply.text("late").after(0.3), Reply.text("fast"))
    results: dict[str, float] = {}

    def slow() -> None:
        started = time.perf_counter()
        assert ask() == "late"
        results["slow"] = time.perf_counter() - started

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while not scripted.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.perf_counter()
    assert ask() == "fast"  # answered while the slow one waits
    fast = time.perf_counter() - started
    thread.join()
    assert results["slow"] >= 0.3
    assert fast < 0.3


def test_a_responder_can_misbehave_on_every_request():
    def responder(body):
        return Reply.tool_calls(MEMORY_CALL.broken())

    with ScriptedServer(responder=responder) as server:
        client = strict_client(server)
        for _ in range(2):
            completion = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
            (call,) = completion.choices[0].message.tool_calls
            assert call.function.arguments == MEMORY_CALL.broken().arguments
