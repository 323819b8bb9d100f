"""`anomed serve`: trained detectors as a REST service with a review page.

    from anomed.serve import ServeConfig, run_server
    run_server(ServeConfig(runs=["runs/demo/checkpoint"]))

Parts: config.py (settings and limits), uploads.py (staging, sniffing, header checks),
batching.py (micro-batcher), studies.py (scoring and pictures), store.py (SQLite WAL),
service.py (models + store + jobs), guard.py (token, body cap), app.py (routes), static/ (page).
FastAPI and uvicorn come with the `serve` extra: pip install 'anomed[serve]'.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from anomed.errors import AnomedError
from anomed.serve.config import ServeConfig, is_loopback

__all__ = ["ServeConfig", "run_server", "build_app"]


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise AnomedError(
            f"anomed serve needs FastAPI, uvicorn and python-multipart ({exc.name} is missing). "
            "Fix: pip install 'anomed[serve]'."
        ) from exc


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AnomedError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror}). "
                "Fix: pick another --port, or stop the program using it."
            ) from exc


def build_app(cfg: ServeConfig):
    """Load the checkpoints and return the FastAPI app (for uvicorn or a test client)."""
    _require_extra()
    from anomed.serve.app import create_app
    from anomed.serve.service import Service

    return create_app(Service.open(cfg))


def run_server(cfg: ServeConfig, log: Callable[[str], None] = print) -> None:
    """Load every checkpoint once, then serve until interrupted (Ctrl-C)."""
    _require_extra()
    import uvicorn

    if cfg.port:
        _check_port(cfg.host, cfg.port)
    if not is_loopback(cfg.host) and not cfg.token:
        print(
            f"anomed serve: warning: listening on {cfg.host} without a token; anyone who can "
            "reach this address can upload and read studies. Pass --token or ANOMED_TOKEN.",
            file=sys.stderr,
        )
    app = build_app(cfg)
    service = app.state.service
    for model in service.models.values():
        info = model.describe()
        log(
            f"model {info['name']}: {info['method']} on {info['backbone']['model']} "
            f"({info['device']}), threshold {info['threshold']}"
        )
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    log(f"review page: http://{host}:{cfg.port}/   API docs: http://{host}:{cfg.port}/docs")
    log(f"data: {service.data_dir}" + ("   (token required for /api/)" if cfg.token else ""))
    level = "info" if cfg.access_log else "warning"
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=level, access_log=cfg.access_log)
