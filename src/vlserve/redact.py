"""Request content in log lines, withheld in privacy mode (docs/api.md#privacy-mode).

A log line that quotes what a caller sent or what the model wrote (a caller's JSON schema, an answer
so far, an upstream's error text, which may echo the prompt) passes that part through
:func:`content`. Once a service in this process runs in privacy mode, :func:`withhold_content` is
called and every such part is logged as a placeholder; it is never switched back, so two services in
one process (tests) can only err on the private side.
"""

from __future__ import annotations

WITHHELD = "[withheld: privacy mode]"
_withheld = False


def withhold_content() -> None:
    """From now on, :func:`content` hides what it is given."""
    global _withheld
    _withheld = True


def withholding() -> bool:
    return _withheld


def content(value: object) -> object:
    """``value`` for a log line, or a placeholder in privacy mode."""
    return WITHHELD if _withheld else value
