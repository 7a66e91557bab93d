"""``Client`` and ``AsyncClient``: the same API, blocking and asyncio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Literal, overload

import httpx

from vlserve.client._base import (
    DEFAULT_TIMEOUT,
    RETRY_CODES,
    RETRY_STATUSES,
    VIDEO_TIMEOUT,
    Answer,
    SSEDecoder,
    StreamItem,
    answer_from,
    build_payload,
    decode_error,
    retry_delay,
    stream_item,
    timeout_for,
)
from vlserve.client._jobs import (
    Job,
    JobEvent,
    JobRef,
    JobRequest,
    job_bodies,
    job_event,
    job_from,
    job_path,
    list_params,
)
from vlserve.errors import FetchError, VlserveError


class _Common:
    def __init__(self, base_url: str, api_key: str | None, timeout: float, video_timeout: float,
                 max_retries: int, backoff: float, backoff_cap: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.video_timeout = video_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap

    def _retryable(self, err: VlserveError, attempt: int) -> bool:
        status = getattr(err, "status", 0)
        return attempt < self.max_retries and (status in RETRY_STATUSES or err.code in RETRY_CODES)

    def _delay(self, err: VlserveError, attempt: int) -> float:
        retry_after = getattr(err, "retry_after", None)
        return retry_delay(attempt, None if retry_after is None else str(retry_after),
                           base=self.backoff, cap=self.backoff_cap)


class Client(_Common):
    """Blocking client for the vlserve task API.

    >>> client = Client("http://127.0.0.1:8000", api_key="vls-...")
    >>> client.ask(["photo.jpg"], "What is on the table?").answer
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, video_timeout: float = VIDEO_TIMEOUT, max_retries: int = 3,
                 backoff: float = 0.5, backoff_cap: float = 20.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, video_timeout, max_retries, backoff, backoff_cap)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @overload
    def ask(self, images: Iterable[Any] | None = ..., question: str = ..., task: str = ...,
            stream: Literal[False] = ..., **options: Any) -> Answer: ...

    @overload
    def ask(self, images: Iterable[Any] | None = ..., question: str = ..., task: str = ...,
            stream: Literal[True] = ..., **options: Any) -> Iterator[StreamItem]: ...

    def ask(self, images: Iterable[Any] | None = None, question: str = "", task: str = "vqa", stream: bool = False,
            *, videos: Iterable[Any] | None = None, documents: Iterable[Any] | None = None,
            **options: Any) -> Answer | Iterator[StreamItem]:
        """Run ``task`` on the inputs. Local files are uploaded as data URIs.

        Returns an :class:`Answer`, or with ``stream=True`` an iterator of :class:`Token` items
        followed by one :class:`Final`. Errors raise the typed exception of their code.
        """
        videos = list(videos or [])
        payload = build_payload(task, question, images, videos, documents, stream, options)
        timeout = timeout_for(task, videos, self.timeout, self.video_timeout)
        if stream:
            return self._stream(payload, timeout)
        response = self._send("POST", "/infer", json=payload, timeout=timeout)
        return answer_from(response.json())

    def tasks(self) -> list[dict[str, Any]]:
        return list(self._send("GET", "/tasks").json()["tasks"])

    def ready(self) -> bool:
        return self._http.get("/readyz", timeout=self.timeout).status_code == 200

    # -- async jobs ----------------------------------------------------------------------------
    def submit_jobs(self, requests: Iterable[JobRequest | dict[str, Any]]) -> list[Job]:
        """Queue requests as jobs in one batch (refused whole if one is invalid); the jobs come back
        in request order, each with its task and lane."""
        response = self._send("POST", "/jobs", json=job_bodies(requests))
        return [job_from(j) for j in response.json()["jobs"]]

    def get_job(self, job: JobRef) -> Job:
        """The job now; another key's job is :class:`~vlserve.errors.NotFoundError` like a missing one."""
        return job_from(self._send("GET", job_path(job)).json())

    def list_jobs(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        """This key's jobs, newest first (``status`` filters: queued, running, succeeded, ...)."""
        response = self._send("GET", "/jobs", params=list_params(status, limit, offset))
        return [job_from(j) for j in response.json()["jobs"]]

    def cancel_job(self, job: JobRef) -> Job:
        """Cancel a queued or running job (a finished one raises :class:`~vlserve.errors.RequestError`)."""
        return job_from(self._send("DELETE", job_path(job)).json())

    def wait(self, job: JobRef, *, timeout: float = 600.0, poll_interval: float = 0.5) -> Job:
        """Poll until the job is done (see :attr:`Job.done`); ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not (current := self.get_job(job)).done:
            if time.monotonic() + poll_interval > deadline:
                raise TimeoutError(f"job {current.id} is still {current.status} after {timeout:g} s")
            time.sleep(poll_interval)
        return current

    def job_events(self, job: JobRef, *, read_timeout: float = 60.0) -> Iterator[JobEvent]:
        """Follow a job as the server streams it (``GET /jobs/{id}/events``): ``progress`` events as
        it moves, then one ``final`` event with the finished job. A stream error (for instance 4008
        once the server's ``jobs.events_max_seconds`` passed) is raised typed; so is a refused stream
        (4029: this key's streams are at the server's cap; 2001: the server's). ``read_timeout``
        must exceed the server's keep-alive interval (15 s by default)."""
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        for item in self._events("GET", job_path(job) + "/events", timeout=timeout):
            yield job_event(*item)

    def wait_all(self, jobs: Iterable[JobRef], *, timeout: float = 600.0, poll_interval: float = 0.5) -> list[Job]:
        """:meth:`wait` for each job, within one ``timeout``; returns them in the order given."""
        deadline = time.monotonic() + timeout
        return [self.wait(j, timeout=max(0.0, deadline - time.monotonic()), poll_interval=poll_interval)
                for j in jobs]

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                if attempt >= self.max_retries:
                    raise FetchError(f"could not reach {self.base_url}: {err}") from err
                time.sleep(retry_delay(attempt, None, base=self.backoff, cap=self.backoff_cap))
                continue
            if response.status_code < 400:
                return response
            error = decode_error(response.status_code, response.content, response.headers)
            if not self._retryable(error, attempt):
                raise error
            time.sleep(self._delay(error, attempt))
        raise AssertionError("unreachable")

    def _stream(self, payload: dict[str, Any], timeout: float) -> Iterator[StreamItem]:
        for item in self._events("POST", "/infer_stream", json=payload, timeout=timeout):
            yield stream_item(*item)

    def _events(self, method: str, path: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """The (event, data) pairs of an SSE response; a refusal before the stream is retried like
        :meth:`_send`'s, an error event is the caller's to raise."""
        for attempt in range(self.max_retries + 1):
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    error = decode_error(response.status_code, response.read(), response.headers)
                    if not self._retryable(error, attempt):
                        raise error
                    time.sleep(self._delay(error, attempt))
                    continue
                decoder = SSEDecoder()
                for line in response.iter_lines():
                    if (item := decoder.feed(line)) is not None:
                        yield item
                return


class AsyncClient(_Common):
    """The asyncio twin of :class:`Client` (``await client.ask(...)``, ``async for`` streams)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, video_timeout: float = VIDEO_TIMEOUT, max_retries: int = 3,
                 backoff: float = 0.5, backoff_cap: float = 20.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, video_timeout, max_retries, backoff, backoff_cap)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ask(self, images: Iterable[Any] | None = None, question: str = "", task: str = "vqa",
                  stream: bool = False, *, videos: Iterable[Any] | None = None,
                  documents: Iterable[Any] | None = None, **options: Any) -> Answer | AsyncIterator[StreamItem]:
        """See :meth:`Client.ask`; with ``stream=True`` returns an async iterator."""
        videos = list(videos or [])
        payload = build_payload(task, question, images, videos, documents, stream, options)
        timeout = timeout_for(task, videos, self.timeout, self.video_timeout)
        if stream:
            return self._stream(payload, timeout)
        response = await self._send("POST", "/infer", json=payload, timeout=timeout)
        return answer_from(response.json())

    async def tasks(self) -> list[dict[str, Any]]:
        return list((await self._send("GET", "/tasks")).json()["tasks"])

    async def ready(self) -> bool:
        return (await self._http.get("/readyz", timeout=self.timeout)).status_code == 200

    # -- async jobs (see Client) ---------------------------------------------------------------
    async def submit_jobs(self, requests: Iterable[JobRequest | dict[str, Any]]) -> list[Job]:
        response = await self._send("POST", "/jobs", json=job_bodies(requests))
        return [job_from(j) for j in response.json()["jobs"]]

    async def get_job(self, job: JobRef) -> Job:
        return job_from((await self._send("GET", job_path(job))).json())

    async def list_jobs(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        response = await self._send("GET", "/jobs", params=list_params(status, limit, offset))
        return [job_from(j) for j in response.json()["jobs"]]

    async def cancel_job(self, job: JobRef) -> Job:
        return job_from((await self._send("DELETE", job_path(job))).json())

    async def wait(self, job: JobRef, *, timeout: float = 600.0, poll_interval: float = 0.5) -> Job:
        deadline = time.monotonic() + timeout
        while not (current := await self.get_job(job)).done:
            if time.monotonic() + poll_interval > deadline:
                raise TimeoutError(f"job {current.id} is still {current.status} after {timeout:g} s")
            await asyncio.sleep(poll_interval)
        return current

    async def job_events(self, job: JobRef, *, read_timeout: float = 60.0) -> AsyncIterator[JobEvent]:
        """The asyncio twin of :meth:`Client.job_events` (``async for event in client.job_events(job)``)."""
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        async for item in self._events("GET", job_path(job) + "/events", timeout=timeout):
            yield job_event(*item)

    async def wait_all(self, jobs: Iterable[JobRef], *, timeout: float = 600.0,
                       poll_interval: float = 0.5) -> list[Job]:
        deadline = time.monotonic() + timeout
        return [await self.wait(j, timeout=max(0.0, deadline - time.monotonic()), poll_interval=poll_interval)
                for j in jobs]

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                if attempt >= self.max_retries:
                    raise FetchError(f"could not reach {self.base_url}: {err}") from err
                await asyncio.sleep(retry_delay(attempt, None, base=self.backoff, cap=self.backoff_cap))
                continue
            if response.status_code < 400:
                return response
            error = decode_error(response.status_code, response.content, response.headers)
            if not self._retryable(error, attempt):
                raise error
            await asyncio.sleep(self._delay(error, attempt))
        raise AssertionError("unreachable")

    async def _stream(self, payload: dict[str, Any], timeout: float) -> AsyncIterator[StreamItem]:
        async for item in self._events("POST", "/infer_stream", json=payload, timeout=timeout):
            yield stream_item(*item)

    async def _events(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
        for attempt in range(self.max_retries + 1):
            async with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    error = decode_error(response.status_code, await response.aread(), response.headers)
                    if not self._retryable(error, attempt):
                        raise error
                    await asyncio.sleep(self._delay(error, attempt))
                    continue
                decoder = SSEDecoder()
                async for line in response.aiter_lines():
                    if (item := decoder.feed(line)) is not None:
                        yield item
                return
