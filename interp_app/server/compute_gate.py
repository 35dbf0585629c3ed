"""Callbacks compute a few at a time; the worker's thread pool is larger than that.

gunicorn's threaded worker hands connections to its thread pool in arrival order. With as
many threads as computations, twenty slow callbacks held every thread and a health check
waited behind them for 11.5 s (the compose check gives up after 5 s). Here the pool has
spare threads that only wait, and a semaphore lets ``slots`` callbacks compute at once:
health checks, pages and assets always find a free thread.
"""

from __future__ import annotations

import threading

from flask import Flask, Response, g, request

SPARE_THREADS = 32  # per worker, beyond the computing ones: they cost a stack each, no CPU
CALLBACK_PATH = "/_dash-update-component"
WAIT_SECONDS = 60.0  # a callback waits this long for a slot, then gets a 503


def install_compute_gate(server: Flask, slots: int) -> None:
    """Install last (after the login and the body checks): a refused request holds no slot."""
    gate = threading.BoundedSemaphore(slots)

    @server.before_request
    def _enter() -> Response | None:
        if request.path != CALLBACK_PATH:
            return None
        if not gate.acquire(timeout=WAIT_SECONDS):  # overloaded: say so, free the thread
            busy = Response("The server is busy; try again shortly.\n", 503, mimetype="text/plain")
            busy.headers["Retry-After"] = "5"
            return busy
        g.compute_slot = True
        return None

    @server.teardown_request
    def _leave(_error: BaseException | None) -> None:
        if g.pop("compute_slot", False):
            gate.release()
