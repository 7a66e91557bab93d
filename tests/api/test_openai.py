"""The OpenAI-compatible endpoint through the official ``openai`` SDK, over real servers on loopback:
the same service path as ``/infer`` (limits, moderation of streamed output, metrics, audit), typed
errors with our messages, tools, logprobs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.api.helpers import BLOCKED_TERM, KEYS, LiveServer, make_settings, run_server
from tests.api.samples import data_uri, png_bytes
from vlserve.api.app import create_app
from vlserve.config import ApiKey
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, Message, SamplingParams
from vlserve.service.auth import hash_key
from vlserve.tasks.chat import parse_tool_calls

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 14}},
    "required": ["zone"], "additionalProperties": False}}}
QUESTION = "Tell me a story about the sea."


def _client(server: LiveServer, key: str = "alice", **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS.get(key, key), max_retries=0, **kwargs)


def _user(text: str, image: bytes | None = None) -> list[Any]:
    parts: list[Any] = [{"type": "text", "text": text}]
    if image is not None:
        parts.insert(0, {"type": "image_url", "image_url": {"url": data_uri(image)}})
    return [{"role": "user", "content": parts}]


def _greedy_text(engine: LocalEngine, text: str, max_tokens: int) -> str:
    return engine.generate_sync(GenerationRequest([Message("user", [*_parts(text)])],
                                                  SamplingParams(max_tokens=max_tokens))).text


def _parts(text: str) -> list[Any]:
    from vlserve.runtime.protocol import TextPart

    return [TextPart(text)]


@pytest.fixture(scope="module")
def strict_server(engine: LocalEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Small limits: a 64 KiB body, one interactive slot and no queue, and a blocked term that the
    tiny model's greedy answer to QUESTION contains (so output moderation has something to catch)."""
    tmp = tmp_path_factory.mktemp("strict")
    answer = _greedy_text(engine, QUESTION, 24)
    caught = answer.strip()[8:14]
    assert len(caught) == 6
    keys = [ApiKey(id=name, sha256=hash_key(key), rate_per_minute=2 if name.startswith("slow") else 10_000)
            for name, key in KEYS.items()]
    settings = make_settings(
        tmp, auth={"keys": [k.model_dump() for k in keys]},
        limits={"max_body_bytes": 64 * 1024, "max_images": 2, "max_tokens": 256, "default_max_tokens": 128,
                "max_stop_strings": 4},
        moderation={"blocked_terms": [BLOCKED_TERM, caught], "audit_log": str(tmp / "audit.jsonl")},
        scheduling={"lanes": {"interactive": {"concurrency": 1, "queue_size": 0, "queue_timeout": 5.0}}},
    )
    for url in run_server(create_app(settings, engine=engine)):
        yield LiveServer(url, settings, None)


def test_every_failure_is_a_typed_openai_error_with_our_message(strict_server: LiveServer) -> None:
    client = _client(strict_server)
    cases: list[tuple[type[openai.APIStatusError], int, int, dict[str, Any]]] = [
        (openai.BadRequestError, 400, 4000, {"messages": _user("hi"), "temperature": 7}),
        (openai.BadRequestError, 400, 4000, {"messages": _user("hi"), "n": 2}),
        (openai.BadRequestError, 400, 4000, {"messages": _user("hi"), "stop": ["a", "b", "c", "d", "e"]}),
        (openai.BadRequestError, 400, 4000, {"messages": _user("hi"), "max_tokens": 100_000}),
        (openai.BadRequestError, 400, 1006, {"messages": _user("x", png_bytes(32, 32)) * 3}),
        (openai.APIStatusError, 415, 1001, {"messages": _user("x", b"junk bytes")}),
        (openai.APIStatusError, 451, 3001, {"messages": _user(f"talk about {BLOCKED_TERM}")}),
        (openai.APIStatusError, 413, 1005, {"messages": _user("y" * 70_000)}),
    ]
    for kind, status, code, kwargs in cases:
        with pytest.raises(kind) as caught:
            client.chat.completions.create(model="tiny", **{"max_tokens": 4, **kwargs})
        err = caught.value
        assert err.status_code == status, (kwargs, err)
        body = err.body
        assert isinstance(body, dict) and body["code"] == code and body["message"]
        assert body["message"] in str(err) and body["type"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=_user("hi"), n=3)
    assert caught.value.param == "n" and "n must be 1" in caught.value.message  # type: ignore[attr-defined]
    with pytest.raises(openai.AuthenticationError) as auth:
        _client(strict_server, key="wrong-key").chat.completions.create(model="tiny", messages=_user("hi"))
    assert auth.value.body["code"] == 4001  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        client.get("/nothing-here", cast_to=httpx.Response)
    assert missing.value.body["code"] == 4040  # type: ignore[index]
    slow = _client(strict_server, key="slow")
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(4):
            slow.chat.completions.create(model="tiny", messages=_user("hi"), max_tokens=1)
    assert limited.value.body["code"] == 4029  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_full_lane_answers_503_with_retry_after(strict_server: LiveServer) -> None:
    client = _client(strict_server)
    started = threading.Event()

    def hold() -> None:
        stream = client.chat.completions.create(model="tiny", messages=_user("Count slowly."), max_tokens=200,
                                                stream=True, temperature=0.9, seed=1)
        for _ in stream:
            started.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(60)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="tiny", messages=_user("hi"), max_tokens=2)
        assert caught.value.status_code == 503 and caught.value.body["code"] == 2001  # type: ignore[index]
        assert caught.value.body["type"] == "overloaded_error"  # type: ignore[index]
        assert caught.value.response.headers["retry-after"]
    finally:
        holder.join(120)


def test_streamed_chat_output_is_moderated(strict_server: LiveServer) -> None:
    blocked = strict_server.settings.moderation.blocked_terms[1]
    client = _client(strict_server)
    seen = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="tiny", messages=_user(QUESTION), max_tokens=24,
                                                    temperature=0, stream=True):
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert blocked.lower() not in seen.lower()
    assert "3001" in str(caught.value.body) or "policy" in caught.value.message.lower()
    with pytest.raises(openai.APIStatusError) as whole:
        client.chat.completions.create(model="tiny", messages=_user(QUESTION), max_tokens=24, temperature=0)
    assert whole.value.status_code == 451
    entries = [json.loads(line) for line in Path(strict_server.settings.moderation.audit_log).read_text().splitlines()]
    assert any(e["stage"] == "output" for e in entries)


def test_chat_takes_the_service_path_metrics_and_audit_hashes(strict_server: LiveServer) -> None:
    client = _client(strict_server)
    image = png_bytes(seed=9)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="tiny", messages=_user(f"{BLOCKED_TERM}!", image), max_tokens=2)
    audit = Path(strict_server.settings.moderation.audit_log).read_text().splitlines()
    last = json.loads(audit[-1])
    assert last["input_sha256"] == [hashlib.sha256(image).hexdigest()]
    system = [{"role": "system", "content": f"Never mention {BLOCKED_TERM}."}, *_user("hi")]
    with pytest.raises(openai.APIStatusError) as caught:  # system prompts are checked like any text
        client.chat.completions.create(model="tiny", messages=system, max_tokens=2)
    assert caught.value.status_code == 451
    client.chat.completions.create(model="tiny", messages=_user("Hello"), max_tokens=3)
    metrics = httpx.get(strict_server.url + "/metrics", headers={"Authorization": f"Bearer {KEYS['alice']}"}).text
    assert 'task="chat"' in metrics


def test_forced_tool_calls_follow_the_function_schema(server: LiveServer) -> None:
    client = _client(server)
    for choice, names in (("required", {"get_weather", "get_time"}),
                          ({"type": "function", "function": {"name": "get_time"}}, {"get_time"})):
        for seed in range(3):
            done = client.chat.completions.create(
                model="tiny", messages=_user("What is the weather in Paris?"), tools=[WEATHER, CLOCK],
                tool_choice=choice, max_tokens=60, temperature=1.0, seed=seed)  # type: ignore[arg-type]
            choice_ = done.choices[0]
            assert choice_.finish_reason == "tool_calls" and choice_.message.tool_calls
            call = choice_.message.tool_calls[0]
            assert call.function.name in names and call.id.startswith("call_")
            schema = (WEATHER if call.function.name == "get_weather" else CLOCK)["function"]["parameters"]
            jsonschema.validate(json.loads(call.function.arguments), schema)
    stream = list(client.chat.completions.create(
        model="tiny", messages=_user("Time?"), tools=[CLOCK], tool_choice="required", max_tokens=40, stream=True))
    calls = [c for chunk in stream if chunk.choices for c in chunk.choices[0].delta.tool_calls or []]
    assert calls and calls[0].function.name == "get_time"
    assert stream[-1].choices[0].finish_reason == "tool_calls"
    # The call and its result go back into the conversation in Qwen's format.
    history = [*_user("Time?"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}]
    follow = client.chat.completions.create(model="tiny", messages=history, tools=[CLOCK], max_tokens=5)
    assert follow.choices[0].message.content is not None


def test_tool_calls_in_a_free_answer_are_parsed() -> None:
    text = 'Checking.\n<tool_call>\n{"name": "get_time", "arguments": {"zone": 2}}\n</tool_call>'
    answer = parse_tool_calls(text, {"get_time"})
    assert answer.content == "Checking." and answer.tool_calls[0].arguments == {"zone": 2}
    unknown = parse_tool_calls(text, {"other"})
    assert unknown.content == text and not unknown.tool_calls
    broken = parse_tool_calls("<tool_call>\n{not json\n</tool_call>", {"get_time"})
    assert broken.content == "<tool_call>\n{not json\n</tool_call>" and not broken.tool_calls


def test_logprobs_non_streamed_and_streamed(server: LiveServer) -> None:
    client = _client(server)
    done = client.chat.completions.create(model="tiny", messages=_user("Say something."), max_tokens=6,
                                          logprobs=True, top_logprobs=3, temperature=0)
    content = done.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == done.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == done.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert content[0].top_logprobs[0].logprob == content[0].logprob  # greedy took the most likely
    chunks = list(client.chat.completions.create(model="tiny", messages=_user("Say something."), max_tokens=6,
                                                 logprobs=True, temperature=0, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]
    assert [t.logprob for t in streamed] == [t.logprob for t in content]
    plain = client.chat.completions.create(model="tiny", messages=_user("Say something."), max_tokens=6)
    assert plain.choices[0].logprobs is None


def test_async_openai_client_streams_concurrently(server: LiveServer) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEYS["alice"], max_retries=0)

        async def one(i: int) -> str:
            text = ""
            async for chunk in await client.chat.completions.create(
                    model="tiny", messages=_user(f"Item {i}"), max_tokens=5, stream=True):
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            return text

        return await asyncio.gather(*(one(i) for i in range(3)))

    assert all(isinstance(t, str) for t in asyncio.run(run()))
