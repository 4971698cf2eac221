"""Which webhook URLs may be called: http(s) only, and never the service's own network.

A URL whose host is, or resolves to, a loopback, link-local, private, shared, multicast or
otherwise non-global address is refused unless EMBEDTUNE_WEBHOOK_ALLOW_PRIVATE_URLS is set.
The check runs when an endpoint is created and again before every delivery (DNS can change).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
SCHEMES = frozenset({"http", "https"})


class UrlRefused(ValueError):
    """The URL may not be called; the message says why (no server detail in it)."""


def check_syntax(url: str) -> None:
    """http or https, a host, no credentials. Raises ValueError."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError as exc:
        raise ValueError("not a valid URL") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain whitespace")


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal: itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_destination(url: str, *, allow_private: bool) -> None:
    """Raise UrlRefused when `url` is not http(s) or (unless `allow_private`) its host is or
    resolves to a non-public address, or does not resolve at all."""
    try:
        check_syntax(url)
    except ValueError as exc:
        raise UrlRefused(str(exc)) from exc
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"host '{host}' does not resolve") from exc
    if not addresses:
        raise UrlRefused(f"host '{host}' does not resolve")
    if not all(_is_public(a) for a in addresses):
        raise UrlRefused(
            f"host '{host}' is or resolves to a loopback, link-local or private address; "
            "webhooks go to public addresses only (an operator may allow private ones with "
            "EMBEDTUNE_WEBHOOK_ALLOW_PRIVATE_URLS=1)"
        )
