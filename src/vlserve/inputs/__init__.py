"""Untrusted input references of a request (URLs, data URIs, base64, local paths, PDFs) to bytes, safely.

    load_source(ref)           one reference -> Source(data, origin, declared_type)
    ├── Fetcher.fetch(url)     http(s), under a FetchPolicy, connecting only to vetted IPs
    ├── data: URI / base64     strict decoding, size checked before decoding
    └── local path             only inside the configured root
    sniff_kind(data)           image / video / pdf / unknown by magic numbers
    sniff_container(data)      mp4 / matroska / avi / mpegts, or None: what FFmpeg may open
    render_pdf(data)           PDF pages -> RGB images within page and document pixel budgets
    render_pdf_isolated(data)  the same in a worker process with hard time/CPU/memory limits (awaitable)
    probe_pdf_isolated(data)   page count and page boxes, nothing rendered (cost before work)

See docs/inputs.md for the rules and every limit.
"""

from vlserve.inputs.documents import (
    DocumentProbe,
    PagePolicy,
    RenderedDocument,
    pdf_page_count,
    probe_pdf,
    probe_pdf_isolated,
    render_pdf,
    render_pdf_isolated,
)
from vlserve.inputs.fetch import DEFAULT_USER_AGENT, FetchBudget, Fetched, Fetcher
from vlserve.inputs.policy import (
    DEFAULT_MAX_FETCH_BYTES,
    FetchPolicy,
    IPAddress,
    Resolver,
    check_address,
    check_addresses,
    check_host,
    system_resolver,
)
from vlserve.inputs.sniff import InputKind, VideoContainer, sniff_container, sniff_kind
from vlserve.inputs.sources import Source, SourceOrigin, load_source

__all__ = [
    "DEFAULT_MAX_FETCH_BYTES",
    "DEFAULT_USER_AGENT",
    "DocumentProbe",
    "FetchBudget",
    "FetchPolicy",
    "Fetched",
    "Fetcher",
    "IPAddress",
    "InputKind",
    "PagePolicy",
    "RenderedDocument",
    "Resolver",
    "Source",
    "SourceOrigin",
    "VideoContainer",
    "check_address",
    "check_addresses",
    "check_host",
    "load_source",
    "pdf_page_count",
    "probe_pdf",
    "probe_pdf_isolated",
    "render_pdf",
    "render_pdf_isolated",
    "sniff_container",
    "sniff_kind",
    "system_resolver",
]
