"""The SSE encoder, read back by httpx-sse's spec-following decoder."""

from __future__ import annotations

import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import example, given
from hypothesis import strategies as st
from upstreams import TRICKY_TEXTS

from indox_integrations import encode_comment, encode_data, encode_event


def parse(wire: bytes) -> list[ServerSentEvent]:
    """Decode a complete event stream, splitting lines on LF as the encoder writes them."""
    decoder, events = SSEDecoder(), []
    # The final LF ends the last line: it does not start another (empty) one.
    for line in wire.decode("utf-8").split("\n")[:-1]:
        event = decoder.decode(line)
        if event is not None:
            events.append(event)
    return events


def parse_in_pieces(wire: bytes, size: int) -> list[ServerSentEvent]:
    """Decode the way httpx-sse reads a network stream: arbitrary pieces, CR/LF/CRLF lines."""
    lines, decoder, events = SSELineDecoder(), SSEDecoder(), []
    text = wire.decode("utf-8")
    for start in range(0, len(text), size):
        for line in lines.decode(text[start : start + size]):
            event = decoder.decode(line)
            if event is not None:
                events.append(event)
    return events


def lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- properties ------------------------------------------------------------------


@given(st.text().filter(lambda t: "\r" not in t))
@example("")
@example("\n")
@example("data: x\n\nevent: y")
def test_any_text_without_cr_round_trips_exactly(text: str) -> None:
    events = parse(encode_data(text))
    assert len(events) == 1
    assert events[0].event == "message"
    assert events[0].data == text


@given(st.text(alphabet=st.sampled_from(["a", " ", "\r", "\n", "é", ":", "\x00"])))
@example("\r\n")
@example("a\r\rb\r\n\nc\r")
def test_cr_and_crlf_arrive_as_lf(text: str) -> None:
    wire = encode_data(text)
    assert b"\r" not in wire
    [event] = parse(wire)
    assert event.data == lf(text)


@given(st.text(), st.integers(min_value=1, max_value=7))
def test_decoding_in_arbitrary_pieces_gives_the_same_event(text: str, size: int) -> None:
    [event] = parse_in_pieces(encode_data(text), size)
    assert event.data == lf(text)


# --- explicit cases --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    TRICKY_TEXTS + ["", "\n", "\n\n", "a\n\n\nb", "data: ", "🙂", "\x00", "retry: 5"],
    ids=lambda t: repr(t[:20]),
)
def test_tricky_texts_round_trip(text: str) -> None:
    wire = encode_data(text)
    [event] = parse(wire)
    assert event.data == text
    assert event.event == "message" and event.id == "" and event.retry is None


def test_multi_line_text_becomes_several_data_lines() -> None:
    assert encode_data("line one\nline two") == b"data: line one\ndata: line two\n\n"
    assert encode_data("a\r\nb\rc") == b"data: a\ndata: b\ndata: c\n\n"
    assert encode_data("trailing\n") == b"data: trailing\ndata: \n\n"


def test_leading_space_survives_because_one_space_is_always_written() -> None:
    assert encode_data(" x") == b"data:  x\n\n"
    assert parse(encode_data(" x"))[0].data == " x"


def test_one_megabyte_chunk_is_one_event() -> None:
    text = "é" * 500_000 + "\n" + "x" * 10
    wire = encode_data(text)
    assert wire.count(b"\n\n") == 1
    [event] = parse(wire)
    assert event.data == text


def test_encode_event_writes_every_field() -> None:
    wire = encode_event('{"a": 1}', event="usage", id="42", retry=1500)
    assert wire == b'event: usage\nid: 42\nretry: 1500\ndata: {"a": 1}\n\n'
    [event] = parse(wire)
    assert (event.event, event.data, event.id, event.retry) == ("usage", '{"a": 1}', "42", 1500)


def test_encode_event_without_data_and_with_multi_line_data() -> None:
    assert encode_event(event="ping") == b"event: ping\n\n"
    [event] = parse(encode_event("[DONE]", event="done"))
    assert (event.event, event.data) == ("done", "[DONE]")
    [event] = parse(encode_event("a\nb", event="x"))
    assert event.data == "a\nb"


@pytest.mark.parametrize("name", ["two\nlines", "cr\rname", "crlf\r\n"])
def test_event_name_must_be_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="event name must be a single line"):
        encode_event("x", event=name)


@pytest.mark.parametrize("bad_id", ["1\n2", "1\r", "nul\x00"])
def test_event_id_must_be_one_line_without_nul(bad_id: str) -> None:
    with pytest.raises(ValueError, match="event id must be one line without NUL"):
        encode_event("x", id=bad_id)


@pytest.mark.parametrize("retry", [-1, True, 1.5, "100"])
def test_retry_must_be_a_non_negative_int(retry: object) -> None:
    with pytest.raises(ValueError, match="retry must be a non-negative int"):
        encode_event("x", retry=retry)  # type: ignore[arg-type]


@pytest.mark.parametrize("comment", ["", "ping", "stream open", "two\nlines", "data: fake"])
def test_comments_are_ignored_by_the_parser(comment: str) -> None:
    wire = encode_comment(comment) + encode_data("real") + encode_comment(comment)
    assert all(line.startswith(b":") for line in encode_comment(comment).split(b"\n") if line)
    events = parse(wire)
    assert [(e.event, e.data) for e in events] == [("message", "real")]


def test_comment_between_events_does_not_merge_or_split_them() -> None:
    wire = encode_data("a") + encode_comment("ping") + encode_data("b\nc")
    assert [e.data for e in parse(wire)] == ["a", "b\nc"]


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    assert encode_data("a\ud800b") == "data: a\ufffdb\n\n".encode()
    assert encode_event("x\udfff\ny", event="e") == "event: e\ndata: x\ufffd\ndata: y\n\n".encode()
