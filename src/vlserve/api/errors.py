"""The one place where errors become HTTP: status codes, headers and the error envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlserve import errors as e
from vlserve.redact import withholding

log = logging.getLogger("vlserve.api")

#: HTTP status per error class; a subclass not listed takes its nearest listed base's status.
STATUS: dict[type[e.VlserveError], int] = {
    e.RequestError: 400,
    e.PayloadTooLargeError: 413,
    e.RequestTimeoutError: 408,
    e.HeadersTooLargeError: 431,
    e.PrivacyModeError: 403,
    e.GeometryLimitError: 422,
    e.MediaError: 415,
    e.VideoTooLongError: 400,
    e.FetchError: 422,
    e.FetchRefusedError: 403,
    e.OverloadedError: 503,
    e.SensitiveContentError: 451,
    e.AuthError: 401,
    e.RateLimitError: 429,
    e.NotFoundError: 404,
    e.EngineError: 500,
    e.UpstreamError: 502,
    e.UpstreamTimeoutError: 504,
    e.UpstreamUnavailableError: 503,
    e.VlserveError: 500,
}

INTERNAL_MESSAGE = "internal error; quote the request id when reporting it"


def status_for(err: e.VlserveError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def public_message(err: e.VlserveError) -> str:
    # Engine failures carry internals (tensor shapes, paths): log them, answer with the code only.
    public = isinstance(err, e.OverloadedError | e.DecodingError | e.UpstreamError)
    return INTERNAL_MESSAGE if status_for(err) >= 500 and not public else err.message


def error_body(err: e.VlserveError, request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "code": err.code, "msg": public_message(err), "result": None}


#: OpenAI's error ``type`` per HTTP status, so that the ``openai`` SDK and its users see familiar names.
OPENAI_TYPES: dict[int, str] = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                                404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error",
                                415: "invalid_request_error", 422: "invalid_request_error",
                                429: "rate_limit_error", 431: "invalid_request_error",
                                451: "content_policy_violation", 503: "overloaded_error"}


def openai_error_body(err: e.VlserveError, request_id: str) -> dict[str, Any]:
    """The error in OpenAI's shape (``/v1`` endpoints): our message, our code, the field at fault."""
    status = status_for(err)
    param = err.details.get("param", err.details.get("option"))
    return {"error": {"message": public_message(err), "type": OPENAI_TYPES.get(status, "server_error"),
                      "code": err.code, "param": param, "request_id": request_id}}


def error_payload(err: e.VlserveError, request_id: str, path: str) -> dict[str, Any]:
    """The error body for a request to ``path``: OpenAI's shape under ``/v1/``, else our envelope."""
    return openai_error_body(err, request_id) if path.startswith("/v1/") else error_body(err, request_id)


def error_headers(err: e.VlserveError) -> dict[str, str]:
    headers = {}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if isinstance(err, e.AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(err, e.RequestTimeoutError | e.HeadersTooLargeError):
        headers["Connection"] = "close"  # the rest of the request was never read: the connection ends
    return headers


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "req_unknown")


def error_response(err: e.VlserveError, request_id: str, path: str = "") -> JSONResponse:
    status = status_for(err)
    if isinstance(err, e.EngineError):  # ours to fix: keep the details, with the request id
        if withholding():  # privacy mode: the message and traceback may quote the request or the answer
            log.error("request %s failed with %s (code %d)", request_id, type(err).__name__, err.code)
        else:
            log.error("request %s failed with %s", request_id, err, exc_info=err)
    return JSONResponse(error_payload(err, request_id, path), status_code=status, headers=error_headers(err))


def to_vlserve_error(exc: BaseException) -> e.VlserveError:
    """Any exception as one of ours (unknown ones become a generic internal error)."""
    if isinstance(exc, e.VlserveError):
        return exc
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}" for err in exc.errors()
        )
        return e.RequestError(f"invalid request: {problems}")
    if isinstance(exc, StarletteHTTPException):
        if isinstance(exc.__cause__, e.VlserveError):  # e.g. the body limit hit while FastAPI read the body
            return exc.__cause__
        if exc.status_code == 404:
            return e.NotFoundError("no such endpoint")
        return e.RequestError(str(exc.detail))
    return e.EngineError(f"{type(exc).__name__}: {exc}")


async def handle(request: Request, exc: Exception) -> JSONResponse:
    err = to_vlserve_error(exc)
    request.app.state.metrics.errors.labels(str(err.code)).inc()
    return error_response(err, request_id_of(request), request.url.path)


def install(app: Any) -> None:
    for exc_type in (e.VlserveError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle)
