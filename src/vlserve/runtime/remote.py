"""A remote engine: the engine protocol over an OpenAI-compatible chat-completions server.

The upstream is vLLM, SGLang, LMDeploy or another vlserve serving one Qwen3-VL model. Everything
above the runtime sees an :class:`~vlserve.runtime.protocol.Engine`, as with the embedded one.

What leaves this process is bounded and normalised here first, so an upstream never sees a bomb:
images (already decoded, checked and resized by the service) are resized again to the server's
``max_pixels`` if needed and re-encoded as PNG or JPEG; videos pass the same checks as on the
embedded path (encoded size, container signature and whitelist, frame size, duration policy, read
in the isolated worker by :func:`vlserve.media.probe_video_async`), are cut to the allowed length
there when the policy truncates, and travel as data URIs. Image
and video token counts are computed locally (``usage.image_tokens``/``video_tokens``).

Mapping (see docs/remote.md):

- ``SamplingParams.json_schema`` → ``response_format`` ``json_schema`` (strict);
- ``logprobs`` are asked for (unless ``confidence = false`` and the caller did not ask):
  ``confidence`` is ``exp(mean(log p))`` of the upstream's token log-probabilities;
  ``SamplingParams.logprobs = k`` → ``top_logprobs = k``;
- ``tools`` pass through; tool calls in the answer come back as Qwen3's ``<tool_call>`` blocks
  in the text, as the embedded engine writes them;
- ``prefill``: vLLM and SGLang (dialects ``vllm``, ``sglang``) get the final assistant message and
  ``continue_final_message``; other upstreams cannot continue a message, so a prefill with a
  JSON schema is dropped (the schema already constrains the same continuation) and one without
  is refused (4000);
- video ``fps`` goes to vLLM as ``mm_processor_kwargs`` (``fps``, ``do_sample_frames``);
- ``activated_experts`` is None: an upstream does not report MoE routing.

Errors: an upstream 4xx becomes our :class:`RequestError` family with the upstream's message;
429/503 become :class:`OverloadedError` (2001, its ``Retry-After``); anything else, a broken
stream, a timeout or a refused connection becomes an :class:`UpstreamError` subclass with a public
message that names no address. Cancelling a stream (the caller went away) closes the upstream
connection, which vLLM, SGLang and vlserve all take as an abort of that request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from vlserve import errors as e
from vlserve.config import Upstream
from vlserve.media import VisionSettings, count_image_tokens, count_video_tokens, probe_video_async
from vlserve.media.image import encoded_source
from vlserve.media.sizing import image_target_size
from vlserve.redact import content
from vlserve.runtime.protocol import (
    EngineHealth,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    StreamEvent,
    TextDelta,
    TokenLogprob,
    Usage,
    VideoPart,
)

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("vlserve.remote")

#: Upstream error bodies read at most this far (an error page is never large; a hostile one may be).
MAX_ERROR_BYTES = 64 * 1024
#: One SSE line at most this long: a chunk carries a few tokens and their alternatives.
MAX_LINE_BYTES = 1 << 20
#: A whole (non-streamed) answer read at most this far: every token with 20 alternatives of a
#: 32 k-token answer stays below it; beyond, the upstream is misbehaving.
MAX_ANSWER_BYTES = 64 << 20
#: Bodies of the small side requests (``/v1/models``, health) read at most this far.
MAX_SIDE_BYTES = 1 << 20
#: An upstream's Prometheus ``/metrics`` page read at most this far.
MAX_METRICS_BYTES = 8 << 20
_QUEUE_SERIES = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "vlserve_queue_depth")
_PASSTHROUGH_MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}  # what every OpenAI-compatible server decodes
_INLINE_PIXELS = 64 * 64  # images up to this size are encoded on the event loop (a thread hop costs about as much)
_VIDEO_MIME = {"mp4": "video/mp4", "matroska": "video/x-matroska", "avi": "video/x-msvideo"}
_CODES: dict[int, type[e.VlserveError]] = {}
_closing: set[asyncio.Task[None]] = set()  # clients closing in the background, kept from the collector


def _error_classes() -> dict[int, type[e.VlserveError]]:
    if not _CODES:
        todo: list[type[e.VlserveError]] = [e.VlserveError]
        while todo:
            cls = todo.pop()
            _CODES.setdefault(cls.code, cls)
            todo.extend(cls.__subclasses__())
    return _CODES


@dataclass
class Outgoing:
    """A request ready to send to any replica of the model: only ``model`` is added per replica."""

    body: dict[str, Any]
    image_tokens: int = 0
    video_tokens: int = 0
    known_tools: set[str] = field(default_factory=set)
    logprobs: bool = False  # the caller asked for them (besides those fetched for confidence)
    _encoded: bytes = b""

    def wire(self, model: str) -> bytes:
        """The JSON body for one replica: ``body`` serialised once (media included), ``model`` put in front."""
        if not self._encoded:
            self._encoded = json.dumps(self.body, separators=(",", ":")).encode()
        head = b'{"model":' + json.dumps(model).encode()
        return head + (b"}" if self._encoded == b"{}" else b"," + self._encoded[1:])

    @property
    def streamed(self) -> bool:
        """Whether the upstream streams the answer (SSE) or sends it as one JSON body."""
        return self.body.get("stream", True) is not False


class RemoteEngine:
    """One upstream server. ``url`` is its base (``http://host:port``); ``options`` the model's
    upstream settings (timeouts, dialect, key); ``vision`` the server's media limits.

    The HTTP client is aiohttp (its C parser and plain asyncio streams cost a fraction of the CPU
    per streamed answer that httpx's pure-Python stack does, and a gateway spends most of its own
    CPU there); one keep-alive connection pool per upstream, created on first use in the running loop."""

    accepts_decoded_video = False  # the protocol carries encoded files: decoded frames go as images

    def __init__(self, url: str, options: Upstream, vision: VisionSettings, *, name: str,
                 client: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.options = options
        self.vision = vision
        self.model_name = name
        self._upstream_model = options.upstream_model
        self._client = client
        self._own_client = client is None
        key = options.api_key
        self._auth = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        self._post_headers = {True: {**self._auth, "Content-Type": "application/json", "Accept": "text/event-stream"},
                              False: {**self._auth, "Content-Type": "application/json", "Accept": "application/json"}}
        self.max_images = options.max_images  # the upstream's own limit per request (long-video windows)

    # -- the engine protocol --------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        outgoing = await encode_request(request, self.options, self.vision)
        async with contextlib.aclosing(self.send(outgoing)) as events:  # closed now if our caller goes away
            async for event in events:
                yield event

    async def health(self) -> EngineHealth:
        path = {"vlserve": "/readyz", "openai": "/v1/models"}.get(self.options.dialect, "/health")
        try:
            status, _ = await self._get(path, min(self.options.read_timeout, 5.0), MAX_SIDE_BYTES)
            ready = status == 200
        except (aiohttp.ClientError, TimeoutError):
            ready = False
        return EngineHealth(ready=ready, model=self.model_name)

    def close(self) -> None:
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            # Without a running loop nothing is in flight: the sockets go with the client.
            with contextlib.suppress(RuntimeError):
                task = asyncio.get_running_loop().create_task(client.close())
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- beyond the protocol: used by pools -----------------------------------------------
    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            opts = self.options
            # ``connect`` bounds waiting for a pooled connection plus opening one; ``sock_read`` is
            # the longest silence between two reads (the first token included); no total limit,
            # since a long answer streams for as long as it needs.
            timeout = aiohttp.ClientTimeout(total=None, connect=opts.connect_timeout,
                                            sock_connect=opts.connect_timeout, sock_read=opts.read_timeout)
            # Idle connections are closed after 4 s, before the 5 s after which uvicorn (vLLM, SGLang,
            # vlserve) closes them: a request never goes out on one the server is closing.
            connector = aiohttp.TCPConnector(limit=opts.max_concurrency + 4, limit_per_host=0,
                                             keepalive_timeout=4.0)
            self._client = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                                 auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar())
        return self._client

    async def queue_depth(self) -> float | None:
        """Requests waiting in the upstream's own queue, from its Prometheus ``/metrics``; None
        when they cannot be read (or the page is larger than ``MAX_METRICS_BYTES``)."""
        try:
            status, raw = await self._get("/metrics", 5.0, MAX_METRICS_BYTES)
        except (aiohttp.ClientError, TimeoutError):
            return None
        if status != 200 or raw is None:
            return None
        return waiting_requests(raw.decode("utf-8", "replace"))

    async def send(self, outgoing: Outgoing) -> AsyncGenerator[StreamEvent, None]:
        """Stream ``outgoing`` to this upstream: text deltas, then one :class:`GenerationResult`."""
        body = outgoing.wire(await self._model())
        started = time.perf_counter()
        state = _Answer()
        try:
            async with self.client.post(self.url + "/v1/chat/completions", data=body,
                                        headers=self._post_headers[outgoing.streamed]) as response:
                complete = False
                try:
                    if response.status >= 400:
                        raise await _status_error(response)
                    index = 0
                    async with contextlib.aclosing(_pieces(response.content, state, outgoing.streamed,
                                                           started)) as pieces:
                        async for text, tokens in pieces:
                            yield TextDelta(text, index, tokens)
                            index += 1
                    complete = True
                finally:
                    if not complete:
                        # An error, or our caller went away: drop the connection (never back to the
                        # pool half read), which the upstream takes as an abort of the request.
                        response.close()
                tail = state.tool_text(outgoing.known_tools)
                if tail:
                    yield TextDelta(tail, index)
        except aiohttp.ConnectionTimeoutError as err:  # opening a connection, or waiting for a pooled one
            log.warning("upstream %s could not be reached in time: %r", self.url, err)
            raise e.UpstreamUnavailableError("the model's upstream server could not be reached in time") from err
        except TimeoutError as err:  # aiohttp's read timeout (SocketTimeoutError) is a TimeoutError
            log.warning("upstream %s timed out: %r", self.url, err)
            raise e.UpstreamTimeoutError(f"the model's upstream server sent nothing for "
                                         f"{self.options.read_timeout:g} seconds") from err
        except aiohttp.ClientConnectorError as err:
            log.warning("upstream %s refused the connection: %r", self.url, err)
            raise e.UpstreamUnavailableError("the model's upstream server could not be reached") from err
        except aiohttp.ClientError as err:  # closed mid-answer, protocol violations
            log.warning("upstream %s failed mid-answer: %r", self.url, err)
            raise e.UpstreamError("the model's upstream server broke off its answer") from err
        if not state.finished:
            raise e.UpstreamError("the model's upstream server ended its answer without finishing it")
        yield state.result(self.model_name, outgoing, ttft=state.ttft)

    # -- internals ------------------------------------------------------------------------
    async def _get(self, path: str, timeout: float, limit: int) -> tuple[int, bytes | None]:
        """GET ``path``: the status and the body (None when it is longer than ``limit``)."""
        async with self.client.get(self.url + path, headers=self._auth,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await _read_at_most(response.content, limit)

    async def _model(self) -> str:
        """The name the upstream serves (configured, or the first of its ``/v1/models``)."""
        if self._upstream_model is None:
            try:
                _, raw = await self._get("/v1/models", self.options.read_timeout, MAX_SIDE_BYTES)
            except TimeoutError as err:
                raise e.UpstreamTimeoutError("the model's upstream server did not list its models in time") from err
            except aiohttp.ClientError as err:
                log.warning("upstream %s: /v1/models failed: %r", self.url, err)
                raise e.UpstreamUnavailableError("the model's upstream server could not be reached") from err
            try:
                self._upstream_model = str(json.loads(raw or b"")["data"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise e.UpstreamError("the model's upstream server did not list the model it serves") from err
        return self._upstream_model


# -- the request ---------------------------------------------------------------------------
async def encode_request(request: GenerationRequest, options: Upstream, vision: VisionSettings) -> Outgoing:
    """The chat-completions body for ``request`` (without ``model``), its media normalised."""
    out = Outgoing(body={}, logprobs=request.params.logprobs is not None)
    messages = [await _message(m, options, vision, out) for m in request.messages]
    p = request.params
    body: dict[str, Any] = {
        "messages": messages, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
    }
    if request.incremental or p.max_tokens > options.whole_answer_max_tokens:
        # Streamed: read_timeout is then the longest silence between tokens, however long the answer.
        body.update(stream=True, stream_options={"include_usage": True})
    else:  # one JSON answer: no per-token events to write, send and parse on either side
        body["stream"] = False  # (vLLM refuses stream_options without streaming)
    if options.confidence or p.logprobs is not None:
        body["logprobs"], body["top_logprobs"] = True, p.logprobs or 0
    if p.presence_penalty:
        body["presence_penalty"] = p.presence_penalty
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    extended = options.dialect != "openai"  # vLLM's sampling extensions, which SGLang and vlserve share
    if extended and p.top_k > 0:
        body["top_k"] = p.top_k
    if extended and p.repetition_penalty != 1.0:
        body["repetition_penalty"] = p.repetition_penalty
    if p.json_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "response", "schema": p.json_schema, "strict": True}}
    if request.tools:
        body["tools"] = request.tools
        out.known_tools = {t.get("function", {}).get("name", "") for t in request.tools}
    if request.prefill:
        if options.dialect in ("vllm", "sglang"):
            messages.append({"role": "assistant", "content": request.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        elif p.json_schema is None:
            raise e.RequestError(f"this model's upstream ({options.dialect}) cannot continue a started answer; "
                                 "this request needs that")
    if options.dialect == "vllm" and out.video_tokens:
        fps = next((part.fps for m in request.messages for part in m.parts
                    if isinstance(part, VideoPart) and part.fps), None)
        body["mm_processor_kwargs"] = {"fps": fps or vision.video_fps, "do_sample_frames": True}
    out.body = body
    return out


async def _message(message: Message, options: Upstream, vision: VisionSettings, out: Outgoing) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role}
    if isinstance(message.content, str):
        wire["content"] = message.content
    else:
        content: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                url, tokens = await _image(part, options, vision)
                out.image_tokens += tokens
                content.append({"type": "image_url", "image_url": {"url": url}})
            elif isinstance(part, VideoPart):
                url, tokens = await _video(part, vision)
                out.video_tokens += tokens
                content.append({"type": "video_url", "video_url": {"url": url}})
            else:
                content.append({"type": "text", "text": part.text})
        wire["content"] = content
    if message.tool_calls:
        wire["tool_calls"] = [{"id": c.id or f"call_{i}", "type": "function",
                               "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                              for i, c in enumerate(message.tool_calls)]
    return wire


async def _image(part: ImagePart, options: Upstream, vision: VisionSettings) -> tuple[str, int]:
    from PIL import Image

    image = part.image
    if not isinstance(image, Image.Image):
        raise e.EngineError("a preprocessed image cannot be sent to a remote engine; send the decoded image")
    width, height = image.size
    if options.image_passthrough and (passed := passthrough_uri(image, vision)) is not None:
        return passed, count_image_tokens(width, height, vision)
    if width * height <= _INLINE_PIXELS:  # a thread hop costs more than encoding a thumbnail
        return _encode_image(image, part.encoding or options.image_format, vision)
    return await asyncio.to_thread(_encode_image, image, part.encoding or options.image_format, vision)


def passthrough_uri(image: Image.Image, vision: VisionSettings) -> str | None:
    """The caller's own encoded bytes as a data URI, when the upstream would decode exactly the
    pixels we checked and counted: ``image`` is :func:`~vlserve.media.image.encoded_source`'s
    untouched decode of them (so they passed every check of the embedded path), a PNG or JPEG,
    and within the model's ``max_pixels`` (the upstream's resize then only rounds the sides to the
    patch grid, as it does with an image we re-encode). None otherwise: then it is re-encoded."""
    source = encoded_source(image)
    mime = _PASSTHROUGH_MIME.get(source[1]) if source is not None else None
    if source is None or mime is None or image.width * image.height > vision.max_pixels:
        return None
    data = source[0]
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _encode_image(image: Image.Image, fmt: str, vision: VisionSettings) -> tuple[str, int]:
    from PIL import Image

    width, height = image.size
    target = image_target_size(width, height, vision)
    if target[0] * target[1] < width * height:
        # Larger than the model sees: sent at the size the model sees (the upstream's resize is then a
        # no-op). Smaller images go as they are; the upstream scales them up exactly as we count.
        image = image.resize(target, Image.Resampling.BICUBIC)
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, "JPEG", quality=95)
    else:
        image.save(buf, "PNG", compress_level=1)  # speed over size: loopback and LAN links are fast
    mime = "image/jpeg" if fmt == "jpeg" else "image/png"
    uri = f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, count_image_tokens(width, height, vision)


async def _video(part: VideoPart, vision: VisionSettings) -> tuple[str, int]:
    """The encoded video as a data URI, after the embedded path's checks; its token count."""
    from vlserve.media.decode import read_video_bytes

    source = part.video
    if not isinstance(source, bytes | str) and not hasattr(source, "__fspath__"):
        raise e.EngineError("decoded frames cannot be sent to a remote engine; send the encoded video")
    if part.start:
        raise e.RequestError("video clips starting after 0 s are not supported by this model's remote engine; "
                             "trim the video before sending it", param="videos")
    data = await asyncio.to_thread(read_video_bytes, source, vision)
    probe = await probe_video_async(data, vision)
    duration = probe.duration if probe.duration is not None else vision.max_video_seconds
    limit = vision.max_video_seconds if part.end is None else min(part.end, vision.max_video_seconds)
    if duration > vision.max_video_seconds and vision.video_policy == "reject":
        raise e.VideoTooLongError(f"The video is {duration:.1f} seconds long; at most "
                                  f"{vision.max_video_seconds:g} seconds are accepted. Trim it and try again.")
    if duration > limit:
        # Cut by copying packets (no re-encoding), in the isolated video worker: the upstream gets
        # only the part the duration policy or the clip's end allows.
        from vlserve.isolation import IsolationError, video_pool

        try:
            data = await video_pool().arun(cut_video, data, limit, probe.container)
        except IsolationError as err:
            raise e.VideoError("The video could not be cut to its allowed length.") from err
        duration = limit
    fps = part.fps or vision.video_fps
    frames = max(vision.temporal_patch_size, min(vision.video_max_frames, math.ceil(duration * fps) + 1))
    tokens = count_video_tokens(frames, probe.width, probe.height, vision)
    mime = _VIDEO_MIME.get(probe.container, "video/mp4")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), tokens


# -- the answer ----------------------------------------------------------------------------
@dataclass
class _Answer:
    """What the chunks of one streamed answer add up to."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    ttft: float = 0.0

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def absorb(self, chunk: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None] | None:
        """Take one chunk in; the new text and its tokens' log-probabilities, if any."""
        if "error" in chunk:
            raise _body_error(chunk, status=None)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or []:
            slot = self.tool_calls.setdefault(int(call.get("index", len(self.tool_calls))), {"name": "", "args": ""})
            function = call.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["args"] += function.get("arguments") or ""
        tokens = _logprobs(choice.get("logprobs"))
        self.logprobs.extend(tokens or [])
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
        text = delta.get("content") or ""
        if not text:
            return None
        self.text += text
        return text, tokens

    def tool_text(self, known: set[str]) -> str:
        """Structured tool calls written back as Qwen3's ``<tool_call>`` blocks (how the tasks read them)."""
        blocks = []
        for _, call in sorted(self.tool_calls.items()):
            try:
                arguments = json.loads(call["args"] or "{}")
            except ValueError:
                arguments = call["args"]
            blocks.append("<tool_call>\n" + json.dumps({"name": call["name"], "arguments": arguments})
                          + "\n</tool_call>")
        tail = ("\n" if self.text and blocks else "") + "\n".join(blocks)
        self.text += tail
        return tail

    def result(self, name: str, outgoing: Outgoing, *, ttft: float) -> GenerationResult:
        usage = self.usage
        output = int(usage.get("completion_tokens") or len(self.logprobs))
        confidence = None
        if self.logprobs:
            mean = sum(t.logprob for t in self.logprobs) / len(self.logprobs)
            confidence = min(1.0, max(math.exp(mean), 1e-300))
        finish: FinishReason = "length" if self.finish == "length" else "stop"
        return GenerationResult(
            text=self.text, token_ids=[], finish_reason=finish,
            usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0), output_tokens=output,
                        image_tokens=outgoing.image_tokens, video_tokens=outgoing.video_tokens),
            confidence=confidence, activated_experts=None, model=name,
            timings={"ttft_ms": ttft * 1000},
            logprobs=self.logprobs if outgoing.logprobs else None,
        )


def _logprobs(data: Any) -> list[TokenLogprob] | None:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        return None
    out = []
    for item in data["content"]:
        logprob = float(item.get("logprob", 0.0))
        top = [(str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in item.get("top_logprobs") or []]
        out.append(TokenLogprob(str(item.get("token", "")), max(logprob, -1e4), top))
    return out


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a streamed body (without their ``\\n``), none longer than ``MAX_LINE_BYTES``."""
    buffer = b""
    async for piece in content.iter_any():
        buffer += piece
        if b"\n" in piece:
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line
        if len(buffer) > MAX_LINE_BYTES:
            raise e.UpstreamError("the model's upstream server sent an oversized stream event")
    if buffer:
        yield buffer


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than ``limit`` bytes."""
    pieces: list[bytes] = []
    size = 0
    async for piece in content.iter_any():
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            return None
    return b"".join(pieces)


async def _pieces(content: aiohttp.StreamReader, state: _Answer, streamed: bool,
                  started: float) -> AsyncGenerator[tuple[str, list[TokenLogprob] | None], None]:
    """The new text (and its tokens' log-probabilities) of an answer as ``state`` takes it in: the
    server-sent events of a streamed one, or the one piece of a whole one; ``state.ttft`` is set
    at the first piece."""
    if not streamed:
        piece = state.absorb(await _whole_answer(content))
        state.ttft = time.perf_counter() - started  # the first token came with the last
        if piece is not None:
            yield piece
        return
    done = False
    async for line in _lines(content):
        # Read to the end even after [DONE]: a response left unread closes its connection, and
        # the next request would pay for a new one.
        chunk = None if done else _sse_data(line)
        if chunk is None:
            continue
        if chunk == "[DONE]":
            done = True
            continue
        piece = state.absorb(chunk)
        if piece is not None:
            if not state.ttft:
                state.ttft = time.perf_counter() - started
            yield piece


async def _whole_answer(content: aiohttp.StreamReader) -> dict[str, Any]:
    """A non-streamed chat completion, read as the one chunk it amounts to (``message`` as the
    ``delta``), at most ``MAX_ANSWER_BYTES``."""
    raw = await _read_at_most(content, MAX_ANSWER_BYTES)
    if raw is None:
        raise e.UpstreamError("the model's upstream server sent an oversized answer")
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise e.UpstreamError("the model's upstream server sent an unreadable answer") from err
    if not isinstance(body, dict):
        raise e.UpstreamError("the model's upstream server sent an unreadable answer")
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        body["choices"] = [{**first, "delta": first.get("message") or {}}]
    return body


def _sse_data(line: bytes) -> Any:
    if len(line) > MAX_LINE_BYTES:
        raise e.UpstreamError("the model's upstream server sent an oversized stream event")
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return "[DONE]"
    try:
        return json.loads(payload)
    except ValueError as err:
        raise e.UpstreamError("the model's upstream server sent an unreadable stream event") from err


async def _status_error(response: aiohttp.ClientResponse) -> e.VlserveError:
    raw = b""
    async for piece in response.content.iter_any():
        raw += piece
        if len(raw) > MAX_ERROR_BYTES:
            break
    try:
        body = json.loads(raw[:MAX_ERROR_BYTES])
    except ValueError:
        body = {"error": {"message": raw[:500].decode("utf-8", "replace")}}
    if not isinstance(body, dict):
        body = {}
    err = _body_error(body, status=response.status)
    if isinstance(err, e.OverloadedError):
        with contextlib.suppress(ValueError):
            err.retry_after = max(1.0, float(response.headers.get("Retry-After", "1")))
    return err


def _body_error(body: dict[str, Any], *, status: int | None) -> e.VlserveError:
    """The upstream's error (OpenAI's ``{"error": {...}}``, vlserve's ``{"code", "msg"}``, or
    FastAPI's ``{"detail"}`` as vLLM sends it) as one of ours."""
    error = body.get("error")
    inner: dict[str, Any] = error if isinstance(error, dict) else body
    message = str(inner.get("message") or inner.get("msg") or inner.get("detail") or "")[:1000]
    code = inner.get("code")
    known = _error_classes().get(code) if isinstance(code, int) else None
    if status in (429, 503) or known is e.OverloadedError:
        return e.OverloadedError("the model's upstream server is overloaded", retry_after=1.0)
    if status is not None and 400 <= status < 500 and status not in (401, 403, 404):
        if known is not None and not issubclass(known, e.EngineError | e.AuthError | e.RateLimitError):
            return known(message or "the request was refused by the model's upstream server")
        return e.RequestError(message or f"the model's upstream server refused the request ({status})")
    if status in (401, 403):
        log.error("the upstream refused this gateway's credentials: %s", content(message))
        return e.UpstreamError("the model's upstream server refused this gateway's credentials")
    if status == 404:
        log.error("the upstream does not serve the model: %s", content(message))
        return e.UpstreamError("the model's upstream server does not serve this model")
    if status is None and known is not None and not issubclass(known, e.EngineError):
        return known(message or "the model's upstream server refused the request")
    log.warning("upstream error (status %s): %s", status, content(message))
    return e.UpstreamError("the model's upstream server failed to answer")


def waiting_requests(text: str) -> float | None:
    """Requests waiting in an upstream's queue, summed over its series: vLLM's
    ``vllm:num_requests_waiting``, SGLang's ``sglang:num_queue_reqs``, vlserve's ``vlserve_queue_depth``."""
    from prometheus_client.parser import text_string_to_metric_families

    names = set(_QUEUE_SERIES)
    # Only the lines of these series are parsed: a server's whole page (histograms per lane and
    # task) takes the pure-Python parser tens of milliseconds of the gateway's CPU per probe.
    wanted = "\n".join(line for line in text.splitlines()
                       if line.startswith(_QUEUE_SERIES) and line.partition("{")[0].split(" ")[0] in names)
    found = None
    try:
        for family in text_string_to_metric_families(wanted):
            for sample in family.samples:
                if sample.name in names:
                    found = (found or 0.0) + float(sample.value)
    except (ValueError, TypeError):
        return None
    return found


def cut_video(data: bytes, seconds: float, container: str) -> bytes:
    """The first ``seconds`` of an encoded video, packets copied as they are (no re-encoding; the
    cut falls on the first packet at or past ``seconds``). Run in the isolated video worker."""
    import av

    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), "r") as source, av.open(out, "w", format=container) as target:
            stream = source.streams.video[0]
            copy = target.add_stream_from_template(stream)
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                if packet.pts is not None and stream.time_base is not None \
                        and float(packet.pts * stream.time_base) >= seconds:
                    if packet.is_keyframe or float(packet.dts * stream.time_base) >= seconds:
                        break
                    continue  # a reordered frame past the cut
                packet.stream = copy
                target.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise e.VideoError("The video could not be cut to its allowed length.") from err
    return out.getvalue()
