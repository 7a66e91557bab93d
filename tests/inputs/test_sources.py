"""load_source: dispatch over URLs, data URIs, base64 and local files, with every size limit."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from tests.inputs.helpers import PNG_BODY, GuardBackend, LoopbackServer, StubResolver, make_png
from vlserve.errors import FetchError, FetchRefusedError, PayloadTooLargeError, RequestError
from vlserve.inputs import Fetcher, FetchPolicy, Source, load_source

MAX = 1024 * 1024


def load(
    ref: str, *, local_root: Path | None = None, max_bytes: int = MAX, policy: FetchPolicy | None = None
) -> Source:
    async def main() -> Source:
        async with Fetcher(policy, resolver=StubResolver(), network_backend=GuardBackend()) as fetcher:
            return await load_source(ref, fetcher=fetcher, local_root=local_root, max_bytes=max_bytes)

    return asyncio.run(main())


# --- inline data ------------------------------------------------------------------------------------------


def test_data_uri_with_base64() -> None:
    source = load("data:image/png;base64," + base64.b64encode(PNG_BODY).decode())
    assert source == Source(PNG_BODY, "data_uri", "image/png")
    assert source.kind == "image"


def test_data_uri_with_percent_encoding_and_parameters() -> None:
    source = load("data:Text/Plain;charset=utf-8,hello%20world")
    assert source == Source(b"hello world", "data_uri", "text/plain")


def test_data_uri_with_garbled_type_keeps_the_data_and_drops_the_type() -> None:
    source = load("data:not a type;base64," + base64.b64encode(PNG_BODY).decode())
    assert source.declared_type is None and source.data == PNG_BODY


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,@@@@", "payload is not valid base64"),
        ("data:image/png;base64,QUJD=EFH", "payload is not valid base64"),
        ("data:image/png;base64,", "payload is empty"),
        ("data:image/png,", "contains no data"),
    ],
)
def test_malformed_data_uris_are_request_errors(ref: str, match: str) -> None:
    with pytest.raises(RequestError, match=match) as info:
        load(ref)
    assert info.value.code == 4000


def test_bare_base64_standard_wrapped_and_url_safe_unpadded() -> None:
    standard = base64.b64encode(PNG_BODY).decode()
    wrapped = "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))
    url_safe = base64.urlsafe_b64encode(PNG_BODY).decode().rstrip("=")
    for ref in (standard, wrapped, url_safe, f"  {standard}\n"):
        assert load(ref) == Source(PNG_BODY, "base64", None)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("A" * 17, "impossible for base64"),
        ("QUJD=EFHQUJDRUZH", "not valid base64"),
        ("QUJD+EFH-UJDRUZH", "mixes the standard and URL-safe"),
    ],
)
def test_bad_base64_is_a_request_error(ref: str, match: str) -> None:
    with pytest.raises(RequestError, match=match):
        load(ref)


def test_base64_over_the_limit_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLargeError, match="1 KiB limit") as info:
        load("A" * 1_000_000, max_bytes=1024)
    assert info.value.code == 1005
    with pytest.raises(PayloadTooLargeError):
        load("data:image/png;base64," + base64.b64encode(b"x" * 2000).decode(), max_bytes=1024)
    with pytest.raises(PayloadTooLargeError):
        load("data:text/plain," + "x" * 2000, max_bytes=1024)
    load(base64.b64encode(b"x" * 1024).decode(), max_bytes=1024)  # exactly at the limit is fine


def test_empty_input_is_a_request_error() -> None:
    with pytest.raises(RequestError, match="empty"):
        load("   ")


# --- URLs -------------------------------------------------------------------------------------------------


def test_http_url_goes_through_the_fetcher_and_its_policy(server: LoopbackServer) -> None:
    with pytest.raises(FetchRefusedError, match="loopback"):
        load(server.url("/image"))
    source = load(server.url("/image"), policy=FetchPolicy(allow_hosts=("127.0.0.1",)))
    assert source == Source(PNG_BODY, "url", "image/png")
    with pytest.raises(PayloadTooLargeError):
        load(server.url("/image"), policy=FetchPolicy(allow_hosts=("127.0.0.1",)), max_bytes=10)


@pytest.mark.parametrize(
    "ref", ["ftp://example.com/a.png", "gopher://example.com/", "javascript:alert(1)", "s3://b/k"]
)
def test_other_schemes_are_refused(ref: str) -> None:
    with pytest.raises(FetchRefusedError, match="not supported"):
        load(ref)


# --- local files ------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "cat.png").write_bytes(PNG_BODY)
    (root / "sub" / "dog.png").write_bytes(make_png(color="green"))
    (tmp_path / "secret.txt").write_text("outside the root")
    return root


def test_local_files_inside_the_root_by_relative_absolute_and_file_url(root: Path) -> None:
    assert load("cat.png", local_root=root) == Source(PNG_BODY, "file", None)
    assert load(str(root / "cat.png"), local_root=root).data == PNG_BODY
    assert load((root / "cat.png").as_uri(), local_root=root).data == PNG_BODY
    assert load(f"file://localhost{root}/cat.png", local_root=root).data == PNG_BODY
    assert load("sub/../sub/dog.png", local_root=root).data == make_png(color="green")


def test_local_files_are_refused_when_no_root_is_configured(root: Path) -> None:
    with pytest.raises(FetchRefusedError, match="local files are disabled"):
        load(str(root / "cat.png"), local_root=None)
    with pytest.raises(FetchRefusedError, match="local files are disabled"):
        load((root / "cat.png").as_uri(), local_root=None)


@pytest.mark.parametrize(
    "ref",
    ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "file:///etc/passwd", "../does-not-exist.png"],
)
def test_paths_escaping_the_root_are_refused(root: Path, ref: str) -> None:
    # Missing and existing files outside the root get the same answer: no probing what exists.
    with pytest.raises(FetchRefusedError, match="outside the directory") as info:
        load(ref, local_root=root)
    assert str(root) not in info.value.message


def test_symlink_escaping_the_root_is_refused(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    (root / "linkdir").symlink_to(root.parent)
    with pytest.raises(FetchRefusedError, match="outside the directory"):
        load("link.txt", local_root=root)
    with pytest.raises(FetchRefusedError, match="outside the directory"):
        load("linkdir/secret.txt", local_root=root)


def test_symlink_staying_inside_the_root_is_followed(root: Path) -> None:
    (root / "alias.png").symlink_to(root / "sub" / "dog.png")
    assert load("alias.png", local_root=root).data == make_png(color="green")


def test_root_given_through_a_symlink_still_works(root: Path, tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to(root)
    assert load("cat.png", local_root=tmp_path / "root-link").data == PNG_BODY


def test_unreadable_local_paths_are_fetch_errors(root: Path) -> None:
    with pytest.raises(FetchError, match="does not exist"):
        load("missing.png", local_root=root)
    with pytest.raises(FetchError, match="not a regular file"):
        load("sub", local_root=root)
    os.mkfifo(root / "pipe.png")  # opening a FIFO must neither hang nor be read
    with pytest.raises(FetchError, match="not a regular file"):
        load("pipe.png", local_root=root)


def test_local_file_over_the_limit_is_refused(root: Path) -> None:
    (root / "big.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(PayloadTooLargeError, match="big.bin"):
        load("big.bin", local_root=root, max_bytes=4096)


def test_file_url_naming_another_host_is_refused(root: Path) -> None:
    with pytest.raises(FetchRefusedError, match="must not name a host"):
        load("file://fileserver/share/cat.png", local_root=root)
