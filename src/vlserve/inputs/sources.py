"""Turn one input reference from a request into bytes.

A reference is one of, checked in this order:

* ``http://`` / ``https://`` URL, fetched by the ``Fetcher`` under its policy;
* ``data:<mime>[;base64],<data>`` URI;
* ``file://`` URL, and any other ``scheme:`` is refused;
* bare base64 (only base64 characters, at least 16 of them; line breaks and
  URL-safe ``-_`` accepted, missing padding tolerated);
* anything else is a local path, relative to ``local_root``.

Local files are off unless the server configures ``local_root``; paths are
resolved (symlinks and ``..`` included) before the containment check, so
neither can lead outside the root. Every branch enforces ``max_bytes`` on the
*decoded* size, and refuses oversized base64 before decoding it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlserve.errors import FetchError, FetchRefusedError, PayloadTooLargeError, RequestError
from vlserve.inputs.fetch import FetchBudget, Fetcher, format_bytes
from vlserve.inputs.sniff import InputKind, sniff_kind

__all__ = ["Source", "SourceOrigin", "load_source"]

SourceOrigin = Literal["url", "data_uri", "base64", "file"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # 2+ letters, so "C:\x" is not a scheme
_BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/\-_=\s]+$")
_MIN_BASE64_LENGTH = 16
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Source:
    """The bytes of one input, where they came from, and the type the sender claimed (untrusted)."""

    data: bytes
    origin: SourceOrigin
    declared_type: str | None = None

    @property
    def kind(self) -> InputKind:
        """What the bytes are, by magic numbers (see ``sniff_kind``)."""
        return sniff_kind(self.data)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def load_source(
    ref: str, *, fetcher: Fetcher, local_root: Path | None, max_bytes: int, budget: FetchBudget | None = None
) -> Source:
    """Load the bytes ``ref`` points to or contains; see the module docstring for the forms.

    ``budget`` is the request's fetch allowance (see ``FetchBudget``), shared by all its URLs.

    Raises RequestError for malformed references (bad base64, bad data URI),
    FetchRefusedError for what the server does not allow (schemes, addresses,
    local paths), FetchError when a URL or file cannot be read, and
    PayloadTooLargeError above ``max_bytes``.
    """
    text = ref.strip()
    if not text:
        raise RequestError("The input is empty; send a URL, a data URI or base64 data.")
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme in ("http", "https"):
            fetched = await fetcher.fetch(text, max_bytes=max_bytes, budget=budget)
            return Source(fetched.data, "url", fetched.content_type)
        if scheme == "data":
            return _load_data_uri(text, max_bytes)
        if scheme == "file":
            return await _load_file(_file_url_path(text), local_root, max_bytes)
        raise FetchRefusedError(
            f"Inputs with the URL scheme '{scheme}' are not supported; use http(s), a data URI or base64."
        )
    if len(text) >= _MIN_BASE64_LENGTH and _BASE64_TEXT.match(text):
        return Source(_decode_base64(text, max_bytes), "base64")
    return await _load_file(text, local_root, max_bytes)


def _decode_base64(text: str, max_bytes: int, what: str = "The base64 data") -> bytes:
    """Decode strictly; ``what`` names the input in messages."""
    if len(text) // 4 * 3 <= max_bytes + 3:
        # The common case (one unwrapped, padded line of the standard alphabet) decodes in one C
        # call; anything else (line breaks, URL-safe, no padding, garbage) takes the path below.
        try:
            data = binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            pass
        else:
            if data and len(data) <= max_bytes:
                return data
    compact = _WHITESPACE.sub("", text)  # MIME encoders wrap lines
    # Refuse from the length alone: decoding 1 GB of text just to reject it is the OOM we avoid.
    if len(compact) // 4 * 3 > max_bytes + 3:
        raise PayloadTooLargeError(f"{what} is larger than the {format_bytes(max_bytes)} limit.")
    if "-" in compact or "_" in compact:
        if "+" in compact or "/" in compact:
            raise RequestError(f"{what} mixes the standard and URL-safe base64 alphabets.")
        compact = compact.replace("-", "+").replace("_", "/")
    remainder = len(compact.rstrip("=")) % 4
    if remainder == 1:
        raise RequestError(f"{what} is truncated or corrupt (its length is impossible for base64).")
    compact = compact.rstrip("=") + "=" * ((4 - remainder) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(f"{what} is not valid base64.") from err
    if not data:
        raise RequestError(f"{what} is empty.")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{what} is larger than the {format_bytes(max_bytes)} limit.")
    return data


def _load_data_uri(text: str, max_bytes: int) -> Source:
    header, comma, payload = text[len("data:") :].partition(",")
    if not comma:
        raise RequestError("The data URI has no ',' between its header and its data.")
    params = [p.strip().lower() for p in header.split(";")]
    media_type = params[0] or None
    if media_type is not None and not _MEDIA_TYPE.match(media_type):
        media_type = None  # a garbled type is just an unreliable hint; sniffing decides anyway
    if "base64" in params[1:]:
        if "%" in payload:
            payload = urllib.parse.unquote(payload)
        data = _decode_base64(payload, max_bytes, what="The data URI's payload")
        return Source(data, "data_uri", media_type)
    if len(payload) > 3 * max_bytes:  # percent-escapes shrink 3:1 at most
        raise PayloadTooLargeError(f"The data URI is larger than the {format_bytes(max_bytes)} limit.")
    data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"The data URI is larger than the {format_bytes(max_bytes)} limit.")
    if not data:
        raise RequestError("The data URI contains no data.")
    return Source(data, "data_uri", media_type)


def _file_url_path(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise FetchRefusedError("file:// URLs must not name a host; use file:///path/to/file.")
    path = urllib.parse.unquote(parts.path)
    if not path:
        raise RequestError("The file:// URL has no path.")
    return path


async def _load_file(path_text: str, local_root: Path | None, max_bytes: int) -> Source:
    shown = _shorten(path_text)
    if local_root is None:
        raise FetchRefusedError(
            f"'{shown}' is not a URL, data URI or base64 data, and local files are disabled on this "
            "server; send the input as a URL or inline data."
        )
    if "\x00" in path_text:
        raise RequestError("The local path contains a NUL character.")
    try:
        root = local_root.resolve(strict=True)
        # Non-strict: a missing file outside the root is refused like an existing one,
        # so the answers cannot be used to probe what exists elsewhere.
        resolved = (root / path_text).resolve(strict=False)
    except (OSError, RuntimeError) as err:  # RuntimeError: symlink loop on older Pythons
        raise FetchError(f"The local file '{shown}' could not be read.") from err
    if not resolved.is_relative_to(root):
        raise FetchRefusedError(
            f"The local path '{shown}' is outside the directory this server may read from."
        )
    data = await asyncio.to_thread(_read_regular_file, resolved, shown, max_bytes)
    return Source(data, "file")


def _read_regular_file(path: Path, shown: str, max_bytes: int) -> bytes:
    # O_NOFOLLOW: the path was resolved just now, so a symlink here means it was swapped in since.
    # O_NONBLOCK: opening a FIFO must not hang the worker; it is rejected as not regular below.
    too_large = f"The local file '{shown}' is larger than the {format_bytes(max_bytes)} limit."
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as err:
        raise FetchError(f"The local file '{shown}' does not exist.") from err
    except OSError as err:
        raise FetchError(f"The local file '{shown}' could not be read.") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchError(f"The local path '{shown}' is not a regular file.")
        if info.st_size > max_bytes:
            raise PayloadTooLargeError(too_large)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        remaining = max_bytes + 1  # read one byte past the limit: the file may grow after fstat
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as err:
        raise FetchError(f"The local file '{shown}' could not be read.") from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise PayloadTooLargeError(too_large)
    return data
