"""The one exception hierarchy of vlserve.

Every error a user can cause carries a documented numeric ``code`` (seed 002's
1001/1002/2001/3001 plus our own); the HTTP layer maps classes to statuses in
exactly one place (``vlserve.api.errors``). Nothing here knows about HTTP.

    VlserveError
    ├── RequestError                      4000  malformed or invalid request
    │   ├── UnknownTaskError              4004
    │   ├── TooManyInputsError            1006
    │   ├── PayloadTooLargeError          1005
    │   ├── RequestTimeoutError           4008  the request arrived too slowly
    │   ├── HeadersTooLargeError          4031  the request head is too large
    │   ├── PrivacyModeError              4030  not available in privacy mode (async jobs)
    │   └── GeometryLimitError            4013  a 3D build ran past its time limit
    ├── MediaError
    │   ├── ImageError                    1001  unsupported or corrupt image
    │   ├── VideoTooLongError             1002
    │   ├── VideoError                    1003  unsupported or corrupt video
    │   ├── DocumentError                 1004  unsupported or corrupt document
    │   ├── FetchError                    1007  a URL could not be fetched
    │   └── FetchRefusedError             1008  a URL is not allowed by policy
    ├── OverloadedError                   2001
    ├── SensitiveContentError             3001
    ├── AuthError                         4001
    ├── RateLimitError                    4029
    ├── NotFoundError                     4040
    └── EngineError                       5000  internal failure of the engine
        ├── ModelNotFoundError            5002
        ├── IncompatibleModelError        5003
        ├── DecodingError                 5004  this request's decoding failed alone
        └── UpstreamError                 5005  a remote engine server failed or answered badly
            ├── UpstreamTimeoutError      5006  a remote engine server stayed silent too long
            └── UpstreamUnavailableError  5007  no remote engine server could be reached
"""

from __future__ import annotations

from typing import Any, ClassVar


class VlserveError(Exception):
    """Base class: a user-facing message plus a stable numeric code."""

    code: ClassVar[int] = 5000

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class RequestError(VlserveError):
    code = 4000


class UnknownTaskError(RequestError):
    code = 4004


class TooManyInputsError(RequestError):
    code = 1006


class PayloadTooLargeError(RequestError):
    code = 1005


class RequestTimeoutError(RequestError):
    """The request head or body arrived slower than the server's ``http`` settings allow."""

    code = 4008


class HeadersTooLargeError(RequestError):
    """The request line and headers are larger than ``http.max_header_bytes``."""

    code = 4031


class PrivacyModeError(RequestError):
    """What privacy mode turns off (async jobs: they would store the request's inputs)."""

    code = 4030


class GeometryLimitError(RequestError):
    """A 3D build (compile or export) ran past its configured time limit and was stopped."""

    code = 4013


class MediaError(VlserveError):
    code = 1000


class ImageError(MediaError):
    code = 1001


class VideoTooLongError(MediaError):
    code = 1002


class VideoError(MediaError):
    code = 1003


class DocumentError(MediaError):
    code = 1004


class FetchError(MediaError):
    code = 1007


class FetchRefusedError(MediaError):
    code = 1008


class OverloadedError(VlserveError):
    code = 2001

    def __init__(self, message: str, *, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class SensitiveContentError(VlserveError):
    code = 3001


class AuthError(VlserveError):
    code = 4001


class RateLimitError(VlserveError):
    code = 4029

    def __init__(self, message: str, *, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class NotFoundError(VlserveError):
    code = 4040


class EngineError(VlserveError):
    code = 5000


class ModelNotFoundError(EngineError):
    code = 5002


class IncompatibleModelError(EngineError):
    code = 5003


class DecodingError(EngineError):
    """One request's scores could not be sampled (non-finite values, a grammar allowing nothing).

    Only that request fails; the others in its batch go on. The message holds no internals."""

    code = 5004


class UpstreamError(EngineError):
    """A remote engine server (vLLM, SGLang, another vlserve) failed, or answered in a way we could
    not read. The message is public and names no address; the details are logged."""

    code = 5005


class UpstreamTimeoutError(UpstreamError):
    """A remote engine server sent nothing for longer than its ``read_timeout``."""

    code = 5006


class UpstreamUnavailableError(UpstreamError):
    """No replica of the model could be reached (refused connections, or all taken out after failures)."""

    code = 5007
