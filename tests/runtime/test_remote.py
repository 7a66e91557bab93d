"""RemoteEngine over real upstreams on loopback: a ``vlserve serve`` process with the tiny model
(an OpenAI-compatible server with tools, logprobs and json_schema), a gateway in front of it, and
a stand-in for vLLM (FakeVllm) where vLLM's own request extensions are checked."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from tests.runtime.upstreams import FakeVllm, gateway, gateway_settings, metric, tiny_mp4
from vlserve import errors
from vlserve.config import Upstream
from vlserve.media import VisionSettings, count_image_tokens
from vlserve.runtime.protocol import (
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    SamplingParams,
    TextDelta,
    TextPart,
    VideoPart,
)
from vlserve.runtime.remote import RemoteEngine, waiting_requests
from vlserve.tasks.chart_parse import CHART_SCHEMA


def png_uri(seed: int = 0, width: int = 96, height: int = 64) -> str:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway(gateway_settings(tmp_path_factory.mktemp("gw"), [upstream])) as url:
        yield url


def engine(url: str, **options: object) -> RemoteEngine:
    return RemoteEngine(url, Upstream(upstreams=[url], **{"dialect": "vlserve", **options}),  # type: ignore[arg-type]
                        VisionSettings(), name="remote")


def test_every_task_through_the_gateway(gw: str) -> None:
    vqa = httpx.post(gw + "/infer", json={"task": "vqa", "images": [png_uri(1)], "text": "What is it?",
                                          "options": {"max_tokens": 8}}, timeout=120).json()
    assert vqa["code"] == 0, vqa
    meta = vqa["result"]["metadata"]
    assert meta["model"] == "gw" and meta["activated_experts"] is None
    assert 0 < vqa["result"]["confidence"] <= 1
    assert meta["input_tokens"] > meta["image_tokens"] > 0 and 0 < meta["output_tokens"] <= 8
    chart = httpx.post(gw + "/infer", json={"task": "chart_parse", "images": [png_uri(2)],
                                            "options": {"max_tokens": 120, "temperature": 1.0, "seed": 3}},
                       timeout=120).json()
    assert chart["code"] == 0, chart
    jsonschema.validate(chart["result"]["answer"], CHART_SCHEMA)  # json_schema went to the upstream
    grounding = httpx.post(gw + "/infer", json={"task": "grounding", "images": [png_uri(3, 400, 100)],
                                                "text": "the cat", "options": {"max_tokens": 40}}, timeout=120).json()
    assert grounding["code"] == 0, grounding
    assert grounding["result"]["answer"]["image_size"] == [400, 100]


def test_openai_stream_with_logprobs_through_the_gateway(gw: str) -> None:
    body = {"model": "gw", "stream": True, "max_tokens": 6, "logprobs": True, "top_logprobs": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                                      {"type": "image_url", "image_url": {"url": png_uri(4)}}]}]}
    chunks = []
    with httpx.stream("POST", gw + "/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    deltas = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(deltas) >= 2  # streamed piece by piece, not in one go
    tokens = [t for c in deltas for t in c["choices"][0]["logprobs"]["content"]]
    assert 1 <= len(tokens) <= 6 and all(len(t["top_logprobs"]) == 2 for t in tokens)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_cancelling_a_stream_frees_the_upstream_row(gw: str, upstream: str) -> None:
    body = {"task": "vqa", "images": [png_uri(5)], "text": "Talk",
            "options": {"max_tokens": 3000, "temperature": 1.0, "seed": 7}}  # sampled: greedy may end at once
    with httpx.stream("POST", gw + "/infer_stream", json=body, timeout=120) as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("event: token"):
                break
        running = metric(upstream, "vlserve_running_requests")
        assert running == 1  # generating (`lines` is held: dropping it would close the stream already)
    # The client went away after its first token: the gateway closes the upstream stream, and the
    # upstream frees the row long before 3000 tokens could have been generated.
    deadline = time.monotonic() + 10
    while metric(upstream, "vlserve_running_requests") != 0:
        assert time.monotonic() < deadline, "the upstream kept generating for a client that left"
        time.sleep(0.1)


def test_a_caller_leaving_infer_frees_the_upstream_row(gw: str, upstream: str) -> None:
    """``/infer`` asks the upstream for a whole answer; a caller that disconnects still frees the
    upstream's row at once (the gateway drops the upstream connection, the upstream aborts)."""
    body = json.dumps({"task": "vqa", "images": [png_uri(8)], "text": "Talk",
                       "options": {"max_tokens": 3000, "temperature": 1.0, "seed": 7}}).encode()
    host, port = gw.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 60
        while metric(upstream, "vlserve_running_requests") != 1:
            assert time.monotonic() < deadline, "the request never reached the upstream"
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while metric(upstream, "vlserve_running_requests") != 0:
        assert time.monotonic() < deadline, "the upstream kept generating for a caller that left"
        time.sleep(0.1)


def test_engine_direct_structured_logprobs_and_tokens(upstream: str) -> None:
    image = Image.fromarray(np.random.default_rng(6).integers(0, 256, (2000, 3000, 3), dtype=np.uint8))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}

    async def run() -> GenerationResult:
        eng = engine(upstream)
        try:
            return await eng.generate(GenerationRequest(
                [Message("user", [ImagePart(image), TextPart("Count")])],
                SamplingParams(max_tokens=40, json_schema=schema, logprobs=1)))
        finally:
            await eng.aclose()

    result = asyncio.run(run())
    json.loads(result.text)  # the upstream's constrained decoding, asked for with response_format
    vision = VisionSettings()
    assert result.usage.image_tokens == count_image_tokens(3000, 2000, vision)  # counted here, within max_pixels
    assert result.usage.input_tokens > result.usage.image_tokens
    assert result.logprobs and all(len(t.top) == 1 for t in result.logprobs)
    mean = sum(t.logprob for t in result.logprobs) / len(result.logprobs)
    assert result.confidence == pytest.approx(math.exp(mean))


def test_whole_answers_equal_streamed_ones(upstream: str) -> None:
    """``incremental=False`` (``/infer``, jobs) asks the upstream for one JSON answer: same text,
    usage and confidence as the token stream, one delta."""
    async def run(incremental: bool) -> tuple[list[TextDelta], GenerationResult]:
        eng = engine(upstream)
        request = GenerationRequest([Message("user", [ImagePart(Image.new("RGB", (64, 48), "teal")),
                                                      TextPart("Describe")])],
                                    SamplingParams(max_tokens=12, logprobs=2), incremental=incremental)
        try:
            events = [event async for event in eng.stream(request)]
        finally:
            await eng.aclose()
        assert isinstance(events[-1], GenerationResult)
        return [d for d in events if isinstance(d, TextDelta)], events[-1]

    (streamed, s), (whole, w) = asyncio.run(run(True)), asyncio.run(run(False))
    assert len(streamed) > 1 and len(whole) == 1
    assert w.text == s.text == "".join(d.text for d in streamed) == whole[0].text
    assert (w.usage, w.finish_reason) == (s.usage, s.finish_reason)
    assert w.confidence == pytest.approx(s.confidence) and len(w.logprobs or []) == len(s.logprobs or [])


def test_infer_asks_for_a_whole_answer_and_infer_stream_for_a_stream(tmp_path: Path) -> None:
    fake = FakeVllm(words=("Hello", " there"))
    with fake.serve() as url, gateway(gateway_settings(tmp_path, [url], dialect="vllm")) as gw:
        body = {"task": "vqa", "images": [png_uri(7)], "text": "What is it?"}
        answer = httpx.post(gw + "/infer", json=body, timeout=60).json()
        assert answer["code"] == 0 and answer["result"]["answer"] == "Hello there", answer
        assert 0 < answer["result"]["confidence"] < 1
        with httpx.stream("POST", gw + "/infer_stream", json=body, timeout=60) as response:
            tokens = [line for line in response.iter_lines() if line.startswith("event: token")]
        long = httpx.post(gw + "/infer", json={**body, "options": {"max_tokens": 513}}, timeout=60).json()
        assert long["code"] == 0 and long["result"]["answer"] == "Hello there", long
    whole, streamed, long_answer = fake.bodies
    assert whole["stream"] is False and "stream_options" not in whole  # vLLM refuses stream_options alone
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert len(tokens) == 2
    # Over remote.whole_answer_max_tokens (512): streamed, so read_timeout bounds the gaps between tokens
    assert long_answer["stream"] is True and long_answer["max_tokens"] == 513


def test_an_oversized_whole_answer_is_an_upstream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeVllm(words=("x" * 5000,))
    with fake.serve() as url:
        async def run() -> None:
            eng = RemoteEngine(url, Upstream(upstreams=[url]), VisionSettings(), name="v")
            try:
                await eng.generate(GenerationRequest([Message("user", "hi")], incremental=False))
            finally:
                await eng.aclose()

        monkeypatch.setattr("vlserve.runtime.remote.MAX_ANSWER_BYTES", 4096)
        with pytest.raises(errors.UpstreamError, match="oversized answer"):
            asyncio.run(run())
        monkeypatch.undo()
        asyncio.run(run())  # within the limit: answered


def test_upstream_refusal_is_a_request_error_with_its_message(upstream: str) -> None:
    async def run() -> None:
        eng = engine(upstream)
        try:
            await eng.generate(GenerationRequest([Message("user", "hi")],
                                                 SamplingParams(max_tokens=4, stop=["x"] * 30)))
        finally:
            await eng.aclose()

    with pytest.raises(errors.RequestError) as caught:
        asyncio.run(run())
    assert "stop" in caught.value.message  # the upstream's own words


def test_video_is_checked_here_and_sent_with_vllm_fps(tmp_path: Path) -> None:
    fake = FakeVllm()
    with fake.serve() as url:
        async def run() -> tuple[list[object], GenerationResult]:
            eng = RemoteEngine(url, Upstream(upstreams=[url]), VisionSettings(), name="v")
            events = [ev async for ev in eng.stream(GenerationRequest(
                [Message("user", [VideoPart(tiny_mp4(), fps=1.0), TextPart("What happens?")])],
                SamplingParams(max_tokens=4, top_k=5), prefill="It"))]
            await eng.aclose()
            return events[:-1], events[-1]  # type: ignore[return-value]

        deltas, result = asyncio.run(run())
    body = fake.bodies[0]
    assert body["model"] == "Qwen/Qwen3-VL-8B-Instruct"  # discovered from /v1/models
    assert body["mm_processor_kwargs"] == {"fps": 1.0, "do_sample_frames": True}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "It"}
    assert body["top_k"] == 5 and body["stream"] is True
    video = body["messages"][0]["content"][0]["video_url"]["url"]
    assert video.startswith("data:video/mp4;base64,")
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Hello", " there"]
    assert result.text == "Hello there" and result.usage.output_tokens == 2 and result.usage.video_tokens > 0
    assert result.confidence == pytest.approx(math.exp(-0.5)) and result.logprobs is None


def test_corrupt_video_never_leaves(tmp_path: Path) -> None:
    fake = FakeVllm()
    with fake.serve() as url:
        async def run() -> None:
            eng = RemoteEngine(url, Upstream(upstreams=[url]), VisionSettings(), name="v")
            try:
                bogus = VideoPart(b"\x00\x00\x00\x18ftypmp42" + b"x" * 500)  # an MP4 signature, then junk
                await eng.generate(GenerationRequest([Message("user", [bogus])]))
            finally:
                await eng.aclose()

        with pytest.raises(errors.VideoError):
            asyncio.run(run())
    assert fake.bodies == []


def test_prefill_without_schema_is_refused_by_plain_openai_upstreams() -> None:
    async def run() -> None:
        eng = RemoteEngine("http://127.0.0.1:9", Upstream(upstreams=["http://127.0.0.1:9"], dialect="openai"),
                           VisionSettings(), name="o")
        await eng.generate(GenerationRequest([Message("user", "hi")], prefill="<tool_call>\n"))

    with pytest.raises(errors.RequestError, match="cannot continue"):
        asyncio.run(run())


def test_queue_depth_is_read_from_prometheus_text() -> None:
    text = ('# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="a"} 3.0\n'
            'vllm:num_requests_waiting{model_name="b"} 2.0\n')
    assert waiting_requests(text) == 5.0
    assert waiting_requests("# TYPE other gauge\nother 1.0\n") is None
    # A whole page: only the exact series count, not others sharing a prefix or a label value.
    page = ('# TYPE vlserve_queue_depth gauge\nvlserve_queue_depth{lane="interactive"} 4.0\n'
            'vlserve_queue_depth{lane="batch"} 1.0\nvlserve_queue_depth_seconds_bucket{le="1.0"} 9.0\n'
            'other{name="vlserve_queue_depth"} 7.0\n' + "".join(f'h_bucket{{le="{i}"}} {i}\n' for i in range(5000)))
    assert waiting_requests(page) == 5.0


def test_gateway_with_remote_engines_never_imports_torch(upstream: str, tmp_path: Path) -> None:
    script = f"""
import sys, time
from starlette.testclient import TestClient
from vlserve.api.app import create_app
from vlserve.config import Settings
settings = Settings.model_validate({{"remote": {{"upstreams": ["{upstream}"], "dialect": "vlserve"}},
                                     "data_dir": {str(tmp_path)!r}, "jobs": {{"workers": 0}}}})
with TestClient(create_app(settings)) as client:
    for _ in range(300):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.1)
    r = client.post("/v1/chat/completions", json={{"model": "main", "max_tokens": 3,
                                                  "messages": [{{"role": "user", "content": "hi"}}]}})
    assert r.status_code == 200, r.text
print("torch" in sys.modules, "transformers" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_confidence_off_spares_the_upstream_logprobs() -> None:
    fake = FakeVllm()
    with fake.serve() as url:
        async def run() -> None:
            for confidence, logprobs in ((False, None), (False, 3), (True, None)):
                eng = RemoteEngine(url, Upstream(upstreams=[url], confidence=confidence), VisionSettings(), name="v")
                await eng.generate(GenerationRequest([Message("user", "hi")], SamplingParams(logprobs=logprobs)))
                await eng.aclose()

        asyncio.run(run())
    assert ["logprobs" in b for b in fake.bodies] == [False, True, True]
    assert fake.bodies[1]["top_logprobs"] == 3


def test_upstream_answers_become_typed_errors() -> None:
    fake = FakeVllm()
    with fake.serve() as url:
        async def run(text: str) -> None:
            eng = RemoteEngine(url, Upstream(upstreams=[url]), VisionSettings(), name="v")
            try:
                await eng.generate(GenerationRequest([Message("user", text)]))
            finally:
                await eng.aclose()

        with pytest.raises(errors.RequestError, match="bad thing"):  # 4xx: the upstream's own message
            asyncio.run(run("please fail"))
        with pytest.raises(errors.UpstreamError) as crashed:  # 5xx: coded, public, no internals
            asyncio.run(run("please crash"))
        assert crashed.value.code == 5005 and "internals" not in crashed.value.message
        with pytest.raises(errors.OverloadedError) as busy:
            asyncio.run(run("please wait"))
        assert busy.value.retry_after == 7.0

    async def unreachable() -> None:
        eng = RemoteEngine(url, Upstream(upstreams=[url], upstream_model="m"), VisionSettings(), name="v")
        await eng.generate(GenerationRequest([Message("user", "hi")]))

    with pytest.raises(errors.UpstreamUnavailableError):  # the server is gone now
        asyncio.run(unreachable())


def test_api_key_goes_as_a_bearer_token_and_stays_secret() -> None:
    fake = FakeVllm()
    options = Upstream.model_validate({"upstreams": ["http://127.0.0.1:1"], "api_key": "sk-upstream"})
    assert "sk-upstream" not in options.model_dump_json() and "sk-upstream" not in repr(options)
    with fake.serve() as url:
        async def run() -> None:
            eng = RemoteEngine(url, options, VisionSettings(), name="k")
            await eng.generate(GenerationRequest([Message("user", "hi")]))
            await eng.aclose()

        asyncio.run(run())
    assert fake.authorization == ["Bearer sk-upstream"]


def test_long_video_is_cut_here_by_the_truncate_policy_or_refused() -> None:
    fake = FakeVllm()
    clip = tiny_mp4(seconds=4.0)
    with fake.serve() as url:
        async def run(vision: VisionSettings, part: VideoPart) -> None:
            eng = RemoteEngine(url, Upstream(upstreams=[url]), vision, name="v")
            try:
                await eng.generate(GenerationRequest([Message("user", [part, TextPart("What happens?")])]))
            finally:
                await eng.aclose()

        with pytest.raises(errors.VideoTooLongError):  # the default policy: reject
            asyncio.run(run(VisionSettings(max_video_seconds=2.0), VideoPart(clip)))
        assert fake.bodies == []
        asyncio.run(run(VisionSettings(max_video_seconds=2.0, video_policy="truncate"), VideoPart(clip)))
        asyncio.run(run(VisionSettings(), VideoPart(clip, end=1.0)))
    sent = [base64.b64decode(b["messages"][0]["content"][0]["video_url"]["url"].split(",", 1)[1])
            for b in fake.bodies]
    import av

    for data, seconds in zip(sent, (2.0, 1.0), strict=True):
        with av.open(io.BytesIO(data)) as video:
            frames = sum(1 for _ in video.decode(video=0))
        assert frames == int(seconds * 4), (seconds, frames)  # 4 fps: only the allowed part left
