"""A local OpenAI-compatible server (``POST /v1/chat/completions``) for the real ``openai`` SDK.

with FakeOpenAI() as server:
    client = openai.OpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0)
"""

from __future__ import annotations

import time
from typing import Any

from fake_indoxrouter import FakeServer, Script, _Handler, usage_of


class FakeOpenAI(FakeServer):
    """Chat completions as OpenAI sends them: ``chat.completion.chunk`` events,
    a final usage chunk with empty ``choices`` when ``stream_options.include_usage``
    asks for it, then ``data: [DONE]``; a wrong key gets OpenAI's 401."""

    def handle(self, handler: _Handler, path: str, body: Any) -> None:
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            handler.send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        elif path == "/v1/chat/completions":
            script = self.script_for(str(body.get("model")))
            if script.status != 200:
                error = {"message": script.error_message, "type": "invalid_request_error"}
                handler.send_json(script.status, {"error": error})
            elif body.get("stream"):
                self.stream(handler, path, "chat", body)
            else:
                handler.send_json(200, self.full_response(body, script))
        else:
            handler.send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _chunk(self, model: str, choices: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def opening_chunks(self, kind: str, model: str) -> list[Any]:
        delta = {"role": "assistant", "content": ""}
        return [self._chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}])]

    def text_chunk(self, kind: str, model: str, text: str) -> dict[str, Any]:
        return self._chunk(model, [{"index": 0, "delta": {"content": text}, "finish_reason": None}])

    def include_usage(self, body: dict[str, Any]) -> bool:
        return bool((body.get("stream_options") or {}).get("include_usage"))

    def closing_chunks(self, kind: str, model: str, usage: dict[str, int] | None) -> list[Any]:
        chunks = [self._chunk(model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])]
        if usage is not None:
            chunks.append(self._chunk(model, [], usage=usage))
        return chunks

    def error_chunk(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error"}}

    def full_response(self, body: dict[str, Any], script: Script) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(script.texts), "refusal": None}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage_of(body, len(script.texts)),
        }
