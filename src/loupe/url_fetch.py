"""Fetch an image by URL for ingest or prediction, without letting a URL reach inside the network.

Every hop (the URL and each redirect) is resolved and refused when any address is loopback, private,
link-local (incl. cloud metadata 169.254.169.254), multicast, reserved or unspecified, unless the host
is on the configured allow-list. Bodies are capped and time-limited, and must say they are images.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import msgspec

from loupe.errors import InvalidArgument


class UrlFetchError(InvalidArgument):
    pass


class UrlPolicy(msgspec.Struct, frozen=True):
    timeout_seconds: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    allow_hosts: tuple[str, ...] = ()  # hosts exempt from the address check (tests, intranets)


def _check_host(host: str, port: int, policy: UrlPolicy) -> None:
    if host in policy.allow_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise UrlFetchError(f"cannot resolve host {host!r}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified
                or (address.version == 6 and address.ipv4_mapped is not None and not address.ipv4_mapped.is_global)):
            raise UrlFetchError(f"URL host {host!r} resolves to a non-public address ({address}); refused")


def _check_url(url: str, policy: UrlPolicy) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlFetchError(f"URL must be http or https, got {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise UrlFetchError("URL has no host")
    _check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), policy)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # redirects are followed by fetch_image itself, re-checking each hop


def fetch_image(url: str, policy: UrlPolicy) -> bytes:
    opener = urllib.request.build_opener(_NoRedirect)
    deadline = time.monotonic() + policy.timeout_seconds
    for _ in range(policy.max_redirects + 1):
        _check_url(url, policy)
        request = urllib.request.Request(url, headers={"User-Agent": "loupe/0.1", "Accept": "image/*"})
        try:
            response = opener.open(request, timeout=max(0.1, deadline - time.monotonic()))
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307, 308) and exc.headers.get("Location"):
                url = urllib.parse.urljoin(url, exc.headers["Location"])
                continue
            raise UrlFetchError(f"URL answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
                raise UrlFetchError(f"URL took longer than {policy.timeout_seconds:.0f} s") from None
            raise UrlFetchError(f"cannot fetch URL: {reason}") from None
        with response:
            kind = response.headers.get_content_type()
            if not kind.startswith("image/") and kind != "application/octet-stream":
                raise UrlFetchError(f"URL did not return an image (content-type {kind})")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise UrlFetchError(f"image at URL is {int(declared) / 1e6:.1f} MB, limit is {policy.max_bytes / 1e6:.0f} MB")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise UrlFetchError(f"URL took longer than {policy.timeout_seconds:.0f} s")
                try:
                    chunk = response.read(65536)
                except (TimeoutError, OSError):
                    raise UrlFetchError(f"URL took longer than {policy.timeout_seconds:.0f} s") from None
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > policy.max_bytes:
                    raise UrlFetchError(f"image at URL is larger than {policy.max_bytes / 1e6:.0f} MB")
                chunks.append(chunk)
    raise UrlFetchError(f"URL redirected more than {policy.max_redirects} times")
