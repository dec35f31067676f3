"""LangChainChat: LangChain chat models, sync and async, through the core.

The models are langchain-core's own fakes, and langchain-openai's ``ChatOpenAI``
against the local OpenAI-compatible server of ``fake_openai.py``.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fake_indoxrouter import Script
from fake_openai import Deltas, FakeOpenAI
from langchain_core.language_models import (
    FakeListChatModel,
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.language_models.fake_chat_models import FakeListChatModelError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from rich_streams import (
    LANGCHAIN_WIRE,
    PROMPT,
    TOOLS,
    WEATHER,
    ChunksChatModel,
    Recorder,
    chat_openai_wire,
    langchain_chunks,
    openai_scripts,
    usage,
    wire,
)

from indox_integrations import (
    ChatRequest,
    CompletionRequest,
    LangChainChat,
    Limits,
    ReasoningEvent,
    TextEvent,
    ToolCallEvent,
    acall_client,
    async_sse_stream,
    call_client,
    iter_events,
    parse_chat,
    sse_stream,
)


def chat(text: str = PROMPT, **options: Any) -> ChatRequest:
    return parse_chat({"messages": [{"role": "user", "content": text}], **options}, Limits())


def events_of(data: bytes) -> list[tuple[str, Any]]:
    pairs = []
    for block in data.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
            pairs.append((name, "\n".join(line[6:] for line in lines if line.startswith("data: "))))
    return wire(pairs)


def sync_wire(llm: LangChainChat, request: Any = None) -> list[tuple[str, Any]]:
    source = call_client(llm, request or chat())
    return events_of(b"".join(sse_stream(source, usage="attach")))


def async_wire(llm: LangChainChat, request: Any = None) -> list[tuple[str, Any]]:
    async def run() -> bytes:
        source = await acall_client(llm, request or chat())
        return b"".join([data async for data in async_sse_stream(source, usage="attach")])

    return events_of(asyncio.run(run()))


WIRES = {"sync": sync_wire, "async": async_wire}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def chat_openai(server: FakeOpenAI, model: str, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=model, api_key="test", base_url=server.url + "/v1", max_retries=0, **options
    )


# -- messages and options ------------------------------------------------------------------


def test_messages_become_langchain_messages_with_the_system_prompt_first() -> None:
    llm = LangChainChat(FakeListChatModel(responses=["x"]), system="Be brief.")
    request = parse_chat(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Weather?"},
            ]
        },
        Limits(),
    )
    assert llm.messages(request) == [
        SystemMessage("Be brief."),
        HumanMessage("Hi"),
        AIMessage("Hello!"),
        HumanMessage("Weather?"),
    ]
    assert llm.messages(CompletionRequest("Tell me a tale")) == [
        SystemMessage("Be brief."),
        HumanMessage("Tell me a tale"),
    ]


def test_the_requests_own_system_message_is_kept_alone() -> None:
    llm = LangChainChat(FakeListChatModel(responses=["x"]), system="Be brief.")
    request = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "In French."},
                {"role": "user", "content": "Hi"},
            ]
        },
        Limits(),
    )
    assert llm.messages(request) == [SystemMessage("In French."), HumanMessage("Hi")]


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_temperature_and_max_tokens_reach_a_model_that_has_them(mode: str) -> None:
    model = ChunksChatModel(chunks=langchain_chunks())
    llm = LangChainChat(model)
    request = chat(temperature=0.2, max_tokens=9)
    (sync_wire if mode == "stream" else async_wire)(llm, request)
    assert model.calls == [(mode, {"temperature": 0.2, "max_tokens": 9})]


def test_a_model_without_those_fields_is_not_handed_them() -> None:
    model = FakeListChatModel(responses=["ok"])
    llm = LangChainChat(model)
    assert llm._call_options(chat(temperature=0.2, max_tokens=9)) == {}
    assert [data for name, data in sync_wire(llm) if name == "message"] == ["o", "k"]


def test_chat_openai_gets_the_options_and_is_asked_for_usage(server: FakeOpenAI) -> None:
    llm = LangChainChat(chat_openai(server, "lc-options"), system="Be brief.", seed=7)
    sync_wire(llm, chat(temperature=0.2, max_tokens=9, model="not-this-one"))
    body = server.requests[-1].body
    assert body["model"] == "lc-options"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT},
    ]
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0.2, 9, 7)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "tools" not in body


def test_a_model_told_not_to_stream_usage_is_not_asked_for_it(server: FakeOpenAI) -> None:
    llm = LangChainChat(chat_openai(server, "lc-no-usage", stream_usage=False))
    events = sync_wire(llm)
    assert "stream_options" not in server.requests[-1].body
    assert [name for name, _ in events] == ["message"] * 3 + ["finish", "done"]


def test_tools_are_bound_on_the_adapter(server: FakeOpenAI) -> None:
    llm = LangChainChat(chat_openai(server, "lc-tools"), tools=TOOLS, tool_choice="get_weather")
    sync_wire(llm)
    body = server.requests[-1].body
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_the_config_reaches_the_run(server: FakeOpenAI) -> None:
    recorder = Recorder()
    llm = LangChainChat(FakeListChatModel(responses=["abc"]), config={"callbacks": [recorder]})
    sync_wire(llm)
    assert recorder.state() == {"tokens": 3, "ends": ["end"]}


def test_what_is_not_a_chat_model_is_refused() -> None:
    with pytest.raises(TypeError, match="expected a LangChain chat model .* got dict"):
        LangChainChat({})


def test_tool_choice_without_tools_is_refused() -> None:
    with pytest.raises(TypeError, match="tool_choice needs tools"):
        LangChainChat(FakeListChatModel(responses=["x"]), tool_choice="auto")


def test_a_model_that_takes_no_tools_says_so() -> None:
    with pytest.raises(NotImplementedError):
        LangChainChat(FakeListChatModel(responses=["x"]), tools=[WEATHER])


def test_without_langchain_core_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_langchain(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("langchain_core"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_langchain)
    with pytest.raises(ImportError, match=r'pip install "indox-integrations\[langchain\]"'):
        LangChainChat(object())


def test_repr_names_the_model() -> None:
    assert repr(LangChainChat(FakeListChatModel(responses=["x"]))) == (
        "LangChainChat(FakeListChatModel)"
    )


# -- sync and async dispatch -----------------------------------------------------------------


def test_sync_skins_get_the_models_stream() -> None:
    model = ChunksChatModel(chunks=langchain_chunks())
    source = call_client(LangChainChat(model), chat())
    assert hasattr(source, "__next__") and not hasattr(source, "__aiter__")
    list(source)
    assert [mode for mode, _ in model.calls] == ["stream"]


def test_async_skins_get_the_models_astream_with_no_thread() -> None:
    model = ChunksChatModel(chunks=langchain_chunks())

    async def run() -> tuple[Any, set[str]]:
        before = {thread.name for thread in threading.enumerate()}
        source = await acall_client(LangChainChat(model), chat())
        names = {thread.name for thread in threading.enumerate()} - before
        chunks = [chunk async for chunk in source]
        return chunks, names

    chunks, new_threads = asyncio.run(run())
    assert len(chunks) == len(langchain_chunks()) + 1  # the closing chunk LangChain adds
    assert [mode for mode, _ in model.calls] == ["astream"]
    assert "indox-client-call" not in new_threads


# -- events and wire -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(WIRES))
def test_reasoning_tool_calls_finish_and_usage_from_message_chunks(mode: str) -> None:
    llm = LangChainChat(ChunksChatModel(chunks=langchain_chunks()))
    assert WIRES[mode](llm) == LANGCHAIN_WIRE


def test_the_events_of_message_chunks() -> None:
    source = call_client(LangChainChat(ChunksChatModel(chunks=langchain_chunks())), chat())
    events = list(iter_events(source))
    assert [e.text for e in events if isinstance(e, ReasoningEvent)] == ["Two", " lookups."]
    assert [e.text for e in events if isinstance(e, TextEvent)] == ["Checking"]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, c.arguments, c.valid) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}, True),
        ("call_2", "get_time", {"tz": "CET"}, True),
    ]


@pytest.mark.parametrize("mode", list(WIRES))
def test_text_of_a_fake_list_model_is_exact(mode: str) -> None:
    text = "Unit Seven,\nbuilt to weld 🙂 doors."
    events = WIRES[mode](LangChainChat(FakeListChatModel(responses=[text])))
    assert "".join(data for name, data in events if name == "message") == text
    assert events[-2:] == [("finish", {"reason": "stop"}), ("done", "[DONE]")]


@pytest.mark.parametrize("mode", list(WIRES))
def test_generic_fake_model_words_arrive_in_order(mode: str) -> None:
    model = GenericFakeChatModel(messages=iter(["Hello there, world"]))
    events = WIRES[mode](LangChainChat(model))
    assert [data for name, data in events if name == "message"] == [
        "Hello",
        " ",
        "there,",
        " ",
        "world",
    ]


@pytest.mark.parametrize("mode", list(WIRES))
def test_a_model_failing_mid_stream_is_the_error_event(mode: str) -> None:
    model = FakeListChatModel(responses=["abcdef"], error_on_chunk_number=2)
    events = WIRES[mode](LangChainChat(model))
    assert events == [
        ("message", "a"),
        ("message", "b"),
        (
            "error",
            {
                "type": "upstream_error",
                "message": f"the model stream failed ({FakeListChatModelError.__name__})",
            },
        ),
        ("done", "[DONE]"),
    ]


@pytest.mark.parametrize("mode", list(WIRES))
def test_a_model_that_cannot_stream_answers_with_its_whole_message(mode: str) -> None:
    # BaseChatModel.stream() of a model with no _stream yields invoke()'s AIMessage.
    message = AIMessage(
        content="Checking.",
        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        response_metadata={"finish_reason": "tool_calls", "model_name": "whole"},
    )
    events = WIRES[mode](LangChainChat(FakeMessagesListChatModel(responses=[message])))
    assert [name for name, _ in events if name in ("message", "tool_call", "finish")] == [
        "message",
        "tool_call",
        "finish",
    ]
    assert dict(events)["tool_call"]["arguments"] == {"city": "Paris"}
    assert dict(events)["usage"] == usage("whole", 3, 4, "tool_calls")


@pytest.mark.parametrize("mode", list(WIRES))
def test_chat_openai_streams_tool_calls_finish_and_usage(mode: str, server: FakeOpenAI) -> None:
    script, _ = openai_scripts()["parallel-tools"]
    server.scripts["lc-rich"] = script
    llm = LangChainChat(chat_openai(server, "lc-rich"), tools=TOOLS)
    assert WIRES[mode](llm) == chat_openai_wire("lc-rich")
    assert server.requests[-1].body["tools"] == TOOLS


@pytest.mark.parametrize("mode", list(WIRES))
def test_chat_openai_finish_reasons(mode: str, server: FakeOpenAI) -> None:
    server.scripts["lc-length"] = Deltas(("Once", " upon"), finish_reason="length")
    events = WIRES[mode](LangChainChat(chat_openai(server, "lc-length")))
    assert events == [
        ("message", "Once"),
        ("message", " upon"),
        ("finish", {"reason": "length"}),
        ("usage", usage("lc-length", 4, 2, "length")),
        ("done", "[DONE]"),
    ]


@pytest.mark.parametrize("mode", list(WIRES))
def test_chat_openai_failing_before_streaming_is_an_error_event(
    mode: str, server: FakeOpenAI
) -> None:
    # LangChain starts the request on the first read, so the 200 has gone out already.
    server.scripts["lc-missing"] = Script(status=404, error_message="no such model")
    events = WIRES[mode](LangChainChat(chat_openai(server, "lc-missing")))
    assert events == [
        (
            "error",
            {
                "type": "upstream_error",
                "message": "the model stream failed (OpenAIModelNotFoundError)",
            },
        ),
        ("done", "[DONE]"),
    ]


# -- closing ---------------------------------------------------------------------------------

SLOW = Script(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)


def test_closing_the_sync_stream_closes_the_connection(server: FakeOpenAI) -> None:
    server.scripts["lc-slow"] = SLOW
    stream = sse_stream(call_client(LangChainChat(chat_openai(server, "lc-slow")), chat()))
    assert [next(stream) for _ in range(3)][1:] == [b"data: tok0 \n\n", b"data: tok1 \n\n"]
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.sent < len(SLOW.texts) / 4


def test_closing_the_async_stream_closes_the_connection(server: FakeOpenAI) -> None:
    server.scripts["lc-slow"] = SLOW

    async def run() -> None:
        llm = LangChainChat(chat_openai(server, "lc-slow"))
        stream = async_sse_stream(await acall_client(llm, chat()))
        for _ in range(3):
            await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.sent < len(SLOW.texts) / 4


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_closing_ends_the_fake_models_run(mode: str) -> None:
    recorder = Recorder()
    model = FakeListChatModel(responses=["x" * 400], sleep=0.01)
    llm = LangChainChat(model, config={"callbacks": [recorder]})
    if mode == "sync":
        stream = sse_stream(call_client(llm, chat()))
        for _ in range(3):
            next(stream)
        stream.close()
    else:

        async def run() -> None:
            stream = async_sse_stream(await acall_client(llm, chat()))
            for _ in range(3):
                await stream.__anext__()
            await stream.aclose()
            await asyncio.sleep(0.05)

        asyncio.run(run())
    # The thread that iterates a sync stream closes it, once its read returns.
    state = recorder.wait_ended()
    # Not "end": the run was stopped (GeneratorExit, or CancelledError for a task).
    assert state["ends"] in (["GeneratorExit"], ["CancelledError"]), state
    assert state["tokens"] < 100
