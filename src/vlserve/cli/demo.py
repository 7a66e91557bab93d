"""``vlserve demo``: the web demo on port 7860, against a local or remote vlserve server."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    server: Annotated[str, typer.Option(help="The vlserve server to talk to.")] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="VLSERVE_API_KEY",
                                                help="API key sent to the server for the page's requests.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the demo page.")] = 7860,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each read from the server.")] = 300.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the web demo: pick a task, upload images, video, PDFs or photos, watch the answer stream."""
    import uvicorn
    from rich.console import Console

    from vlserve.demo import create_demo_app

    if not server.startswith(("http://", "https://")):
        Console(stderr=True).print(f"[bold red]error[/]: --server must be an http(s) URL, got {server!r}")
        raise typer.Exit(code=2)
    Console().print(f"vlserve demo on http://{host}:{port} (server {server}{', with an API key' if api_key else ''})")
    uvicorn.run(create_demo_app(server, api_key, timeout=timeout), host=host, port=port, log_level=log_level)
