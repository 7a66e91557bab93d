"""Who a request comes from, so that a client flooding the server waits behind its own requests.

A *client* is the API key when keys are configured (``key:ID``), else the peer address
(``addr:HOST``); async jobs run as their key. The HTTP layer names the client once per request
(:func:`set_client`, in ``api/deps.caller``); the lanes and budgets read it with
:func:`current_client` when a request is admitted. Three rules use it (docs/scheduling.md,
"Fairness"):

* a lane gives one client at most ``max_client_share`` of its places (running and queued): the
  rest of a flood is refused with 2001 while other clients still get in;
* a free running slot goes to the waiting request whose client has the fewest requests in that
  lane (priority first, arrival order among equals), so a client with one request does not queue
  behind another client's twenty;
* a client may reserve at most ``client_budget_share`` of a cost budget while others wait: its
  next request waits behind its own, not in front of theirs (one request always fits alone).
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["ANONYMOUS", "client_id", "current_client", "set_client"]

ANONYMOUS = "anonymous"
_CLIENT: ContextVar[str] = ContextVar("vlserve_client", default="")


def client_id(key_id: str | None, address: str | None) -> str:
    """The client a request counts against: its key, else its peer address."""
    if key_id:
        return f"key:{key_id}"
    if address:
        return f"addr:{address}"
    return ANONYMOUS


def set_client(client: str) -> None:
    """Name the client of the request being handled (the current task and the tasks it starts)."""
    _CLIENT.set(client)


def current_client(key_id: str | None = None) -> str:
    """The current request's client: set by the HTTP layer, else ``key_id``'s (async jobs), else anonymous."""
    return _CLIENT.get() or client_id(key_id, None)
