"""An OpenAI-dialect chat-completion stream as an Anthropic Messages event stream.

Pure state machine: `feed(event)` per decoded upstream SSE event, `close()` at upstream EOF;
both return encoded Anthropic SSE frames. Grammar produced: message_start, one ping,
content_block_start/delta/stop (indices 0..n, one block open at a time, see
stream_blocks.py), message_delta, message_stop; or `event: error` and nothing after it.

Policy:
- message_start (+ ping) is sent at the first chunk that carries choice 0, so Azure's
  `prompt_filter_results` preamble and usage-only chunks never start a message. Its
  usage holds `input_tokens_hint` until the provider reports usage (at the end).
- The end (close the open block, message_delta, message_stop) is sent once the
  finish_reason has arrived AND usage has been reported — in the finish chunk itself
  (DeepSeek, Mistral, Groq) or in a later chunk (OpenAI's `include_usage`, OpenRouter) —
  or, without usage, at `[DONE]` / EOF. Usage is therefore never reported as 0/0 when
  the provider sent it; a provider that never sends usage gets `input_tokens_hint` and 0.
- `[DONE]` or EOF without a finish_reason is an error (a truncated answer must not look
  like a success); so are an `{"error": ...}` chunk, `event: error`, a non-JSON chunk and
  `finish_reason: "error"`. Anything after the end or an error is ignored.
- Ids are deterministic in the input: `msg_` + the chunk id (a hash of the first event's
  data when the provider sends none), generated tool ids hash the message id and index.
- Choice 0 only (n > 1). Stop-sequence, refusal and reasoning rules: see response.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway import fastjson
from gateway.translate.errors import error_event, openai_stream_error
from gateway.translate.response import (
    anthropic_stop,
    content_pieces,
    first_choice,
    matched_stop,
    message_id,
    reasoning_text,
    tool_use_id,
)
from gateway.translate.sse import Event, encode
from gateway.translate.stream_blocks import BlockWriter
from gateway.translate.thinking import synthetic_signature
from gateway.translate.usage import Usage, anthropic_usage, usage_in_chunk


class StreamConverter:
    def __init__(
        self,
        *,
        model: str,
        stop_sequences: Sequence[str] = (),
        provider: str = "",
        input_tokens_hint: int = 0,
    ) -> None:
        self.model = model
        self.usage = Usage(input_tokens=input_tokens_hint)
        self.finished = False
        self.error: tuple[str, str] | None = None
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self._stop_sequences = tuple(s for s in stop_sequences if s)
        self._tail_length = max((len(s) for s in self._stop_sequences), default=0)
        self._tail = ""
        self._blocks = BlockWriter(signature=synthetic_signature(provider), tool_id=self._tool_id)
        self._usage_reported = False
        self._started = False
        self._first_data = ""
        self._upstream_id = ""
        self._upstream_model = ""
        self._message_id = ""
        self._finish_reason: str | None = None
        self._matched: str | None = None

    @property
    def content_started(self) -> bool:
        """True once model output (a text/thinking delta or a tool_use start) was produced."""
        return self._blocks.content_started

    def feed(self, event: Event) -> list[bytes]:
        if self.finished or self.error is not None:
            return []
        data = event.data.strip()
        if event.name == "error":
            return self._fail(*openai_stream_error(_loads(data, default=data)))
        if data == "[DONE]":
            return self._end() if self._finish_reason is not None else self._truncated()
        if not data:
            return []
        chunk = _loads(data, default=None)
        if not isinstance(chunk, dict):
            return self._fail("api_error", "upstream sent a stream chunk that is not a JSON object")
        self._first_data = self._first_data or data
        return self._chunk(chunk)

    def close(self) -> list[bytes]:
        """Upstream EOF."""
        if self.finished or self.error is not None:
            return []
        return self._end() if self._finish_reason is not None else self._truncated()

    def _chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        usage = usage_in_chunk(chunk)
        if usage is not None:
            self.usage, self._usage_reported = usage, True
        if chunk.get("error"):
            return self._fail(*openai_stream_error(chunk))
        self._note_identity(chunk)
        frames: list[bytes] = []
        choice = first_choice(chunk.get("choices"))
        if choice is not None:
            frames += self._start()
            frames += self._choice(choice)
        if self._finish_reason is not None and self._usage_reported:
            frames += self._end()
        return frames

    def _note_identity(self, chunk: Mapping[str, Any]) -> None:
        chunk_id, model = chunk.get("id"), chunk.get("model")
        if not self._upstream_id and isinstance(chunk_id, str):
            self._upstream_id = chunk_id
        if not self._upstream_model and isinstance(model, str):
            self._upstream_model = model

    def _choice(self, choice: Mapping[str, Any]) -> list[bytes]:
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        frames = self._blocks.delta("thinking", reasoning_text(delta))
        for kind, text in content_pieces(delta.get("content")):
            frames += self._write(kind, text)
        refusal = delta.get("refusal")
        if isinstance(refusal, str):
            frames += self._write("text", refusal)
        tool_calls = delta.get("tool_calls")
        for call in tool_calls if isinstance(tool_calls, list) else []:
            if isinstance(call, dict):
                frames += self._tool_fragment(call)
        finish = choice.get("finish_reason")
        if finish and self._finish_reason is None:
            self._finish_reason = str(finish)
            self._matched = matched_stop(choice, self._stop_sequences)
        return frames

    def _write(self, kind: str, text: str) -> list[bytes]:
        if kind == "text" and self._tail_length:
            self._tail = (self._tail + text)[-self._tail_length :]
        return self._blocks.delta(kind, text)

    def _tool_fragment(self, call: Mapping[str, Any]) -> list[bytes]:
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        key = call.get("index")
        if not isinstance(key, int):  # no index: a call with an id or name is a new one
            key = self._blocks.new_key() if call_id or name else self._blocks.last_key()
        return self._blocks.tool_fragment(
            key,
            call_id if isinstance(call_id, str) else "",
            name if isinstance(name, str) else "",
            arguments if isinstance(arguments, str) else "",
        )

    def _tool_id(self, key: int) -> str:
        return tool_use_id("", self._message_id, key)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        self._message_id = message_id(self._upstream_id, self._first_data)
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model or self._upstream_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(self.usage),
        }
        start = encode("message_start", {"type": "message_start", "message": message})
        return [start, encode("ping", {"type": "ping"})]

    def _end(self) -> list[bytes]:
        if self._finish_reason == "error":
            return self._fail("api_error", "upstream ended the answer with finish_reason 'error'")
        frames = self._start() + self._blocks.finish()
        self.stop_reason, self.stop_sequence = anthropic_stop(
            self._finish_reason,
            tool_use=self._blocks.tool_use,
            matched=self._matched,
            text=self._tail,
            stop_sequences=self._stop_sequences,
        )
        delta = {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence}
        usage = anthropic_usage(self.usage)
        frames.append(
            encode("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        frames.append(encode("message_stop", {"type": "message_stop"}))
        self.finished = True
        return frames

    def _truncated(self) -> list[bytes]:
        return self._fail("api_error", "upstream stream ended before a finish_reason")

    def _fail(self, error_type: str, message: str) -> list[bytes]:
        self.error = (error_type, message)
        return [error_event(error_type, message)]


def _loads(data: str, *, default: Any) -> Any:
    try:
        return fastjson.loads(data)
    except ValueError:
        return default
