"""HTTP hardening for every response of the app's Flask server.

Security headers keep the pages out of other sites' frames (clickjacking) and stop browsers
guessing content types. A component-suite path Dash does not know is a client's mistake, so
it gets a 404, not the 500 (and logged traceback) of Dash's ``DependencyException``.
Credentials, OPTIONS included, are checked in ``interp_app.server.auth``.
"""

from __future__ import annotations

from dash.exceptions import DependencyException
from flask import Flask, Response

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",  # older browsers
    "Content-Security-Policy": "frame-ancestors 'none'",  # current ones
    "X-Content-Type-Options": "nosniff",
}


def add_security_headers(response: Response) -> Response:
    """Every response, errors and 401s included; a header already set is left alone."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def unknown_component_file(_: DependencyException) -> tuple[str, int, dict[str, str]]:
    """Dash raises this only for a package or file it never registered: nothing to serve.
    The exception's text lists every registered file, so it is not echoed."""
    return "No such component file.\n", 404, {"Content-Type": "text/plain; charset=utf-8"}


def install_http_guards(server: Flask) -> None:
    server.after_request(add_security_headers)
    server.register_error_handler(DependencyException, unknown_component_file)
