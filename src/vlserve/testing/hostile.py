"""A corpus of hostile requests, each with the answers it may get, for probing a vlserve server.

Every case is a request an attacker (or a careless client) can send, grouped by the class of harm
it tries: unusable sampling values, tiny bodies that cost gigabytes, schema bombs, parser abuse
(FFmpeg, PDFium), unbounded text, malformed Unicode and JSON. ``allowed`` lists the
``(HTTP status, code)`` pairs a correct server may answer (code 0: success); anything else, and
any 5xx, is a failure. Used by ``tests/hostile/`` and ``bench/hostile.py``; point it at your own
deployment with :func:`run_case`.

The media are built here, byte by byte where needed (a PNG whose header claims 8000×8000 pixels
in 100 bytes, an SDP description posing as a video), so the corpus needs no files.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

OK = (200, 0)


@dataclass(frozen=True)
class Case:
    """One hostile request: ``body()`` builds it (JSON-able, or raw bytes sent as JSON)."""

    name: str
    harm: str
    path: str
    body: Callable[[], Any]
    allowed: tuple[tuple[int, int], ...]


def data_uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


# -- media built byte by byte -----------------------------------------------------------------------
def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG of about 100 bytes whose header declares ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG header (SOI, quantisation table, SOF0) declaring ``width`` x ``height``, then no data."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + dqt + sof + b"\xff\xd9"


def float_tiff(side: int) -> bytes:
    """A deflate-compressed 32-bit float TIFF of ``side`` x ``side`` zeros (small file, large decode)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("F", (side, side)).save(buf, "TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def pdf(width_pt: float, height_pt: float, pages: int = 1) -> bytes:
    """A blank PDF of ``pages`` pages of the given box (points)."""
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(width_pt, height_pt)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def slow_pdf(strokes: int = 20_000) -> bytes:
    """A one-page PDF of a few KB whose compressed content stream draws ``strokes`` Bezier curves.

    PDFium needs roughly 0.3 ms per stroke to render it (seconds in all), while the file stays tiny:
    the cheap-to-send, expensive-to-render shape of a hostile document.
    """
    # A period of 64 distinct curves: deflate turns the repeats into a few bytes each.
    ops = b"0.5 w\n" + b"".join(
        b"%d %d m %d %d %d %d %d %d c S\n" % (j * 9, j * 12, 600 - j * 9, j * 3, j * 5, 790 - j * 11, 612 - j, j)
        for j in (i % 64 for i in range(strokes))
    )
    body = zlib.compress(ops, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


SDP = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=probe\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=video 45999 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
FFCONCAT = b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'vlserve-jobs.sqlite3'\n"
HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"


# -- the corpus -------------------------------------------------------------------------------------
def small_png(seed: int = 0, side: int = 32) -> bytes:
    """An ordinary, valid PNG."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _vqa(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"task": "vqa", "text": "What is it?", "images": [data_uri(small_png())],
                            "options": {"max_tokens": 4}}
    options = over.pop("options", {})
    body.update(over)
    body["options"] = {**body["options"], **options}
    return body


def _chat(**over: Any) -> dict[str, Any]:
    return {"model": "any", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **over}


def _image_part(data: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_uri(data)}}


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def _schema_chat(schema: dict[str, Any]) -> dict[str, Any]:
    return _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})


BAD_INPUT = ((400, 4000),)
TOO_MANY = ((400, 1006),)
TOO_LARGE = ((413, 1005),)
BAD_IMAGE = ((415, 1001),)
BAD_VIDEO = ((415, 1003),)

CASES: list[Case] = [
    # unusable sampling values (and extreme but valid ones, which must decode)
    Case("temperature NaN", "sampling", "/infer", lambda: _raw(json.dumps(_vqa()).replace(
        '"max_tokens": 4', '"max_tokens": 4, "temperature": NaN')), BAD_INPUT),
    Case("temperature Infinity", "sampling", "/v1/chat/completions",
         lambda: _raw(json.dumps(_chat()).replace('"max_tokens": 4', '"max_tokens": 4, "temperature": Infinity')),
         BAD_INPUT),
    Case("temperature 1e-30", "sampling", "/infer", lambda: _vqa(options={"temperature": 1e-30}), (OK,)),
    Case("top_p 1e-300", "sampling", "/infer", lambda: _vqa(options={"temperature": 1.0, "top_p": 1e-300}), (OK,)),
    Case("repetition_penalty 1e-30", "sampling", "/infer", lambda: _vqa(options={"repetition_penalty": 1e-30}),
         BAD_INPUT),
    Case("seed 2**70", "sampling", "/infer", lambda: _vqa(options={"seed": 2**70, "temperature": 1}), BAD_INPUT),
    Case("seed -2**70", "sampling", "/v1/chat/completions", lambda: _chat(seed=-(2**70)), BAD_INPUT),
    Case("top_k 10**30", "sampling", "/infer", lambda: _vqa(options={"top_k": 10**30}), BAD_INPUT),
    Case("max_tokens 10**12", "sampling", "/infer", lambda: _vqa(options={"max_tokens": 10**12}), BAD_INPUT),
    Case("5000 stop strings", "text", "/infer", lambda: _vqa(options={"stop": [f"s{i}" for i in range(5000)]}),
         BAD_INPUT),
    Case("a 20000-character stop string", "text", "/v1/chat/completions", lambda: _chat(stop=["x" * 20_000]),
         BAD_INPUT),
    # tiny bodies that cost gigabytes
    Case("100-byte PNG claiming 8000x8000", "memory", "/infer",
         lambda: _vqa(images=[data_uri(png_claiming(8000, 8000))]), BAD_IMAGE + TOO_LARGE),
    Case("PNG claiming 60000x60000", "memory", "/infer",
         lambda: _vqa(images=[data_uri(png_claiming(60_000, 60_000))]), BAD_IMAGE + TOO_LARGE),
    Case("JPEG header claiming 65000x65000", "memory", "/v1/chat/completions", lambda: _chat(messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(jpeg_claiming(65000, 65000))}},
                                     {"type": "text", "text": "?"}]}]), BAD_IMAGE + TOO_LARGE),
    Case("float TIFF 4000x4000", "memory", "/infer", lambda: _vqa(images=[data_uri(float_tiff(4000))]),
         (OK, *BAD_IMAGE, *TOO_LARGE)),
    Case("PDF page of 200x200 inches", "memory", "/infer", lambda: {
        "task": "doc_analyze", "documents": [data_uri(pdf(14_400, 14_400))], "options": {"max_tokens": 4}},
         (OK, *TOO_LARGE)),
    Case("PDF drawing 100k curves", "cpu", "/infer", lambda: {
        "task": "doc_analyze", "documents": [data_uri(slow_pdf(100_000))], "options": {"max_tokens": 4}},
         (OK, (415, 1004))),
    Case("PDF of 5000 pages", "memory", "/infer", lambda: {
        "task": "doc_analyze", "documents": [data_uri(pdf(100, 100, pages=5000))], "options": {"max_tokens": 4}},
         TOO_MANY),
    Case("600 image parts in one chat", "memory", "/v1/chat/completions", lambda: _chat(messages=[
        {"role": "user", "content": [_image_part(small_png())] * 600}]), TOO_MANY),
    Case("40 images", "memory", "/infer", lambda: _vqa(images=[data_uri(small_png())] * 40), TOO_MANY),
    # schema bombs
    Case("schema minItems 10**7", "schema", "/v1/chat/completions", lambda: _schema_chat(
        {"type": "array", "items": {"type": "integer"}, "minItems": 10_000_000}), BAD_INPUT),
    Case("schema minItems 10**4 nested 4 deep", "schema", "/v1/chat/completions", lambda: _schema_chat(
        {"type": "array", "minItems": 10_000, "items": {"type": "array", "minItems": 10_000, "items": {
            "type": "array", "minItems": 10_000, "items": {"type": "string", "minLength": 10**9}}}}), BAD_INPUT),
    Case("schema with a self $ref", "schema", "/v1/chat/completions", lambda: _schema_chat(
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/a"}},
                                               "required": ["b"]}}}), BAD_INPUT),
    Case("schema $ref to nowhere", "schema", "/v1/chat/completions", lambda: _schema_chat({"$ref": "#/$defs/zz"}),
         BAD_INPUT),
    Case("schema nested 300 deep", "schema", "/v1/chat/completions", lambda: _schema_chat(_nested_schema(300)),
         BAD_INPUT),
    Case("schema of 40000 properties", "schema", "/v1/chat/completions", lambda: _schema_chat(
        {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(40_000)}}), BAD_INPUT),
    Case("tool parameters bomb", "schema", "/v1/chat/completions", lambda: _chat(tool_choice="required", tools=[
        {"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "array", "minItems": 10**8}}, "required": ["x"]}}}]),
         BAD_INPUT),
    Case("200 tools", "schema", "/v1/chat/completions", lambda: _chat(tools=[
        {"type": "function", "function": {"name": f"f{i}"}} for i in range(200)]), BAD_INPUT),
    # parsers fed what they should never open
    Case("SDP description as a video", "parser", "/infer", lambda: {
        "task": "video_qa", "text": "?", "videos": [data_uri(SDP)], "options": {"max_tokens": 4}}, BAD_VIDEO),
    Case("ffconcat script as a video", "parser", "/infer", lambda: {
        "task": "video_qa", "text": "?", "videos": [data_uri(FFCONCAT)], "options": {"max_tokens": 4}}, BAD_VIDEO),
    Case("HLS playlist as a video", "parser", "/infer", lambda: {
        "task": "video_qa", "text": "?", "videos": [data_uri(HLS)], "options": {"max_tokens": 4}}, BAD_VIDEO),
    Case("ffconcat as a chat video", "parser", "/v1/chat/completions", lambda: _chat(messages=[
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_uri(FFCONCAT)}}]}]), BAD_VIDEO),
    Case("PDF as an image", "parser", "/infer", lambda: _vqa(images=[data_uri(pdf(100, 100))]), BAD_IMAGE),
    Case("garbage base64", "parser", "/infer", lambda: _vqa(images=["!!!not base64!!!"]),
         BAD_INPUT + BAD_IMAGE + ((403, 1008), (422, 1007))),
    Case("file:// outside the root", "parser", "/infer", lambda: _vqa(images=["file:///etc/passwd"]),
         ((403, 1008),)),
    Case("URL to a metadata address", "parser", "/infer", lambda: _vqa(images=["http://169.254.169.254/latest"]),
         ((403, 1008),)),
    # unbounded text
    Case("240k characters of labels", "text", "/infer", lambda: _vqa(labels=["front " * 8000] * 5), BAD_INPUT),
    Case("100k-character system prompt", "text", "/v1/chat/completions", lambda: _chat(messages=[
        {"role": "system", "content": "rule " * 20_000}, {"role": "user", "content": "hi"}]), BAD_INPUT),
    Case("5000 chat messages", "text", "/v1/chat/completions", lambda: _chat(messages=[
        {"role": "user", "content": "hi " * 5}] * 5000), BAD_INPUT),
    # malformed Unicode and JSON
    Case("lone surrogate in text", "unicode", "/infer", lambda: _raw('{"task": "vqa", "text": "\\ud800", '
                                                                   '"images": ["' + data_uri(small_png())
                                                                   + '"], "options": {"max_tokens": 2}}'),
         BAD_INPUT),
    Case("lone surrogate in a label", "unicode", "/infer", lambda: _raw(
        json.dumps(_vqa(labels=["L"])).replace('"L"', '"\\udfff"')), BAD_INPUT),
    Case("lone surrogate in a chat message", "unicode", "/v1/chat/completions", lambda: _raw(
        json.dumps(_chat()).replace('"Hi"', '"\\ud83d"')), BAD_INPUT),
    Case("lone surrogate in a stop string", "unicode", "/infer", lambda: _raw(
        json.dumps(_vqa(options={"stop": ["S"]})).replace('"S"', '"\\udc00"')), BAD_INPUT),
    Case("JSON nested 100000 deep", "json", "/infer", lambda: b"[" * 100_000 + b"]" * 100_000, BAD_INPUT),
    Case("not JSON", "json", "/v1/chat/completions", lambda: b"\x00\xff garbage", BAD_INPUT),
]


def encode(case: Case) -> bytes:
    """The request body of ``case``, as sent (build it once to replay it cheaply)."""
    body = case.body()
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def run_case(client: httpx.Client, case: Case, headers: dict[str, str] | None = None,
             content: bytes | None = None) -> tuple[int, int]:
    """Send ``case`` (or its pre-built ``content``); returns ``(status, code)``, code 0 for a success
    envelope or chat completion."""
    response = client.post(case.path, content=content if content is not None else encode(case),
                           headers={"content-type": "application/json", **(headers or {})})
    try:
        payload = response.json()
    except ValueError:
        return response.status_code, -1
    if not isinstance(payload, dict):
        return response.status_code, -1
    if "error" in payload and isinstance(payload["error"], dict):
        return response.status_code, int(payload["error"].get("code", -1))
    if "choices" in payload:
        return response.status_code, 0
    return response.status_code, int(payload.get("code", -1))
