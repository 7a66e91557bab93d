"""Python SDK for the vlserve task API.

    from vlserve.client import Client
    with Client("http://127.0.0.1:8000", api_key="vls-...") as client:
        print(client.ask(["chart.png"], "What is the trend?").answer)
        for item in client.ask(["chart.png"], "Describe it", task="captioning", stream=True):
            ...

Async jobs: ``jobs = client.submit_jobs([JobRequest("ocr", images=["scan.png"]), ...])``, then
``client.wait(jobs[0]).answer``; also ``get_job``, ``list_jobs``, ``cancel_job`` and ``wait_all``;
``for event in client.job_events(jobs[0])`` follows one as the server streams it (progress, then final).

Errors raise the server's typed exception (``vlserve.errors``), carrying ``code``, ``status``
and ``request_id``. Overload (2001), rate limits (429) and 5xx are retried with jittered
exponential backoff that honours ``Retry-After``. Timeouts default to 30 s, and 120 s for video.
"""

from vlserve.client._base import Answer, Final, StreamItem, Token
from vlserve.client._client import AsyncClient, Client
from vlserve.client._jobs import Job, JobEvent, JobRequest

__all__ = ["Answer", "AsyncClient", "Client", "Final", "Job", "JobEvent", "JobRequest", "StreamItem", "Token"]
