"""The server called by real clients: our SDK (sync and async), the official openai SDK, and the
seed article's QwenVLClient class used as written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import requests

from tests.api.helpers import KEYS, LiveServer
from tests.api.samples import data_uri, png_bytes
from vlserve import errors
from vlserve.client import Answer, AsyncClient, Client, Final, Token


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(seed=5))
    return path


def test_sdk_ask_and_stream(server: LiveServer, photo: Path) -> None:
    with Client(server.url, api_key=KEYS["alice"]) as client:
        answer = client.ask([photo], "What is it?", max_tokens=8)
        assert isinstance(answer, Answer) and answer.code == 0
        assert answer.metadata["output_tokens"] <= 8 and answer.metadata["image_tokens"] > 0
        items = list(client.ask([photo], "What is it?", stream=True, max_tokens=8))
        tokens, final = items[:-1], items[-1]
        assert all(isinstance(t, Token) for t in tokens) and isinstance(final, Final)
        assert final.answer == answer.answer == "".join(t.token for t in tokens).strip()  # type: ignore[union-attr]
        chart = client.ask([photo], task="chart_parse", max_tokens=200)
        assert set(chart.answer) >= {"title", "series"}
        assert {t["name"] for t in client.tasks()} >= {"vqa", "ocr"}


def test_sdk_typed_errors(server: LiveServer, photo: Path) -> None:
    with Client(server.url, api_key=KEYS["alice"], max_retries=0) as client:
        with pytest.raises(errors.UnknownTaskError) as caught:
            client.ask([photo], "x", task="telepathy")
        assert caught.value.code == 4004 and caught.value.status == 400  # type: ignore[attr-defined]
        assert caught.value.request_id.startswith("req_")  # type: ignore[attr-defined]
        with pytest.raises(errors.ImageError):
            client.ask([b"not an image"], "x")
    with Client(server.url, api_key="wrong") as client, pytest.raises(errors.AuthError):
        client.ask([photo], "x")


def test_sdk_retries_honour_retry_after(server: LiveServer, photo: Path) -> None:
    """The 'slow' key allows 2 requests a minute: the SDK waits out Retry-After, up to its budget."""
    slow = Client(server.url, api_key=KEYS["slow-sdk"], max_retries=1, backoff_cap=0.2)
    with pytest.raises(errors.RateLimitError) as caught:
        for _ in range(4):
            slow.ask([photo], "x", max_tokens=1)
    assert caught.value.status == 429  # type: ignore[attr-defined]
    slow.close()


def test_async_sdk(open_server: LiveServer, photo: Path) -> None:
    async def run() -> tuple[Any, list[Any]]:
        async with AsyncClient(open_server.url) as client:
            answer, stream = await asyncio.gather(
                client.ask([photo], "Describe", task="captioning", max_tokens=6),
                client.ask([photo], "Describe", task="captioning", stream=True, max_tokens=6),
            )
            return answer, [item async for item in stream]  # type: ignore[union-attr]

    answer, items = asyncio.run(run())
    assert 1 <= answer.metadata["activated_experts"] <= 8
    assert isinstance(items[-1], Final) and items[-1].answer == answer.answer


def test_openai_sdk(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alice"])
    assert client.models.list().data[0].id
    image = {"type": "image_url", "image_url": {"url": data_uri(png_bytes())}}
    messages: Any = [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]
    done = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 8 and done.usage.prompt_tokens > 50
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == done.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    schema = {"type": "object", "properties": {"label": {"type": "string", "maxLength": 30},
                                               "count": {"type": "integer", "minimum": 0, "maximum": 100}},
              "required": ["label", "count"], "additionalProperties": False}
    structured = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}},
    )
    jsonschema.validate(json.loads(structured.choices[0].message.content or ""), schema)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri(b"junk")}}]}], max_tokens=4)
    assert caught.value.status_code == 415
    assert caught.value.body["code"] == 1001  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope").models.list()


# ---- the seed article's client, as written there (only base_url and the key differ) ---------------
from typing import Generator, List  # noqa: E402, UP035 - kept as the article writes it


class QwenVLClient:
    def __init__(self, api_key: str, base_url: str = "https://api.example.com/qwen-vl"):
        self.api_key = api_key
        self.base_url = base_url
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json"
        }

    def ask(self,
            images: List[str],  # noqa: UP006
            question: str,
            task: str = "vqa",
            stream: bool = False) -> dict or Generator[str, None, None]:  # type: ignore[valid-type]
        payload = {
            "task": task,
            "images": images,
            "text": question,
            "options": {
                "max_tokens": 512,
                "temperature": 0.7,
                "top_p": 0.9,
                "stream": stream
            }
        }
        if not stream:
            try:
                resp = requests.post(
                    f"{self.base_url}/infer",
                    headers=self.headers,
                    json=payload,
                    timeout=30
                )
                return resp.json()
            except Exception as e:
                return {"code": -1, "msg": str(e)}
        else:
            with requests.post(
                f"{self.base_url}/infer_stream",
                headers=self.headers,
                json=payload,
                stream=True,
                timeout=60
            ) as r:
                for line in r.iter_lines():
                    if line:
                        yield line.decode('utf-8')


def test_seed_article_client(server: LiveServer) -> None:
    client = QwenVLClient(api_key=KEYS["alice"], base_url=server.url)
    chunks = list(client.ask(images=[data_uri(png_bytes())], question="这张图的数据是否异常?", stream=True))
    assert chunks[0] == "event: token" and chunks[1].startswith("data: {")
    assert chunks[-2] == "event: final"
    final = json.loads(chunks[-1][len("data: "):])
    assert {"answer", "metadata"} <= set(final)
    # As written, ask() contains `yield`, so even stream=False returns a generator whose return
    # value is the JSON envelope: the article's bug, worked around here without changing the class.
    gen = client.ask(images=[data_uri(png_bytes())], question="总结趋势", task="captioning")
    with pytest.raises(StopIteration) as stop:
        next(gen)
    envelope = stop.value.value
    assert envelope["code"] == 0 and envelope["msg"] == "success" and "answer" in envelope["result"]


def test_cli_ask_server(server: LiveServer, photo: Path) -> None:
    from typer.testing import CliRunner

    from vlserve.cli.main import app

    runner = CliRunner()
    args = ["ask", "--server", server.url, "--api-key", KEYS["alice"], "--image", str(photo), "--max-tokens", "5"]
    as_json = runner.invoke(app, [*args, "--json", "What is it?"])
    assert as_json.exit_code == 0, as_json.output
    envelope = json.loads(as_json.stdout)
    assert envelope["metadata"]["output_tokens"] <= 5
    streamed = runner.invoke(app, [*args, "What is it?"])
    assert streamed.exit_code == 0 and streamed.stdout.strip() == envelope["answer"]
    refused = runner.invoke(app, [*args[:3], "--api-key", "wrong", "--image", str(photo), "Hi"])
    assert refused.exit_code == 2 and "error 4001" in refused.output
