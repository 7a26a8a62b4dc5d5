"""Fetch an image by URL for ingest or prediction, without letting a URL reach inside the network.

Every hop (the URL and each redirect) is resolved once; every address must be globally routable,
including an IPv4 address carried inside IPv6 (mapped, NAT64, 6to4, Teredo), unless the host is on the
configured allow-list. The connection then goes to the address that was checked, not to a second
resolution (which DNS rebinding could point elsewhere). One deadline covers the whole fetch (connect,
headers, body, redirects): a server dripping bytes is cut off when it passes. Every failure is a
`UrlFetchError`, which callers turn into the input's URL status.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable

import msgspec

from loupe.errors import Busy, FetchOutcome, UrlFetchError

_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UrlPolicy(msgspec.Struct, frozen=True):
    timeout_seconds: float = 10.0  # the whole fetch, redirects included
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    allow_hosts: tuple[str, ...] = ()  # hosts exempt from the address check (tests, intranets)
    max_concurrent: int = 8  # fetches in flight per process; more wait briefly, then get 429
    queue_wait_seconds: float = 1.0
    media: str = "image"  # the content-type family accepted ("image", or "video" for video predictions)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable, and so is every IPv4 address the IPv6 one carries."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if any(address in net for net in _NAT64):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(is_public(v4) for v4 in embedded if v4 is not None)
    return True


def resolve(host: str, port: int, policy: UrlPolicy) -> str:
    """The address to connect to; refuses a host with any non-public address (unless allow-listed)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        raise UrlFetchError(f"cannot resolve host {host!r}", FetchOutcome.UNRESOLVED) from None
    addresses = [str(info[4][0]).split("%")[0] for info in infos]
    if not addresses:
        raise UrlFetchError(f"cannot resolve host {host!r}", FetchOutcome.UNRESOLVED)
    if host not in policy.allow_hosts:
        for text in addresses:
            if not is_public(ipaddress.ip_address(text)):
                raise UrlFetchError(f"URL host {host!r} resolves to a non-public address ({text}); refused",
                                    FetchOutcome.REFUSED)
    return addresses[0]


class _Target(msgspec.Struct, frozen=True):
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # bad port ("127.0.0.1:18600:80"), bad IPv6 literal
        raise UrlFetchError(f"malformed URL: {exc}", FetchOutcome.REFUSED) from None
    if parts.scheme not in ("http", "https"):
        raise UrlFetchError(f"URL must be http or https, got {parts.scheme or 'no scheme'!r}", FetchOutcome.REFUSED)
    if not parts.hostname:
        raise UrlFetchError("URL has no host", FetchOutcome.REFUSED)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise UrlFetchError("URL path contains spaces or control characters", FetchOutcome.REFUSED)
    return _Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


class _Pinned(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; the Host header still names the host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(_Pinned):
    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


class UrlFetcher:
    """Owned by the application object: the policy plus the bound on fetches in flight."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._slots = threading.BoundedSemaphore(policy.max_concurrent)
        self.observers: list[Callable[[FetchOutcome], None]] = []  # told how every fetch ended (metrics)

    def fetch(self, url: str, deadline: float | None = None, *, max_bytes: int | None = None,
              kind: str = "image") -> bytes:
        """The image (or video) bytes at `url`. `deadline` (time.monotonic) can shorten the policy's own."""
        policy = self.policy if max_bytes is None and kind == "image" else msgspec.structs.replace(
            self.policy, max_bytes=max_bytes or self.policy.max_bytes, media=kind)
        if not self._slots.acquire(timeout=self.policy.queue_wait_seconds):
            self._tell(FetchOutcome.BUSY)
            raise Busy(f"{self.policy.max_concurrent} URL downloads are in progress; retry shortly",
                       retry_after=max(1, round(self.policy.timeout_seconds / 2)))
        try:
            own = time.monotonic() + self.policy.timeout_seconds
            body = fetch_image(url, policy, own if deadline is None else min(own, deadline))
        except UrlFetchError as exc:
            self._tell(exc.outcome)
            raise
        finally:
            self._slots.release()
        self._tell(FetchOutcome.FETCHED)
        return body

    def _tell(self, outcome: FetchOutcome) -> None:
        for observe in self.observers:
            observe(outcome)


def fetch_image(url: str, policy: UrlPolicy, deadline: float | None = None) -> bytes:
    deadline = time.monotonic() + policy.timeout_seconds if deadline is None else deadline
    for _ in range(policy.max_redirects + 1):
        target = _parse(url)
        address = resolve(target.host, target.port, policy)
        status, location, body = _one_hop(target, address, policy, deadline)
        if status in _REDIRECTS:
            if not location:
                raise UrlFetchError(f"URL answered HTTP {status} without a Location", FetchOutcome.HTTP_ERROR)
            url = urllib.parse.urljoin(url, location)
            continue
        return body
    raise UrlFetchError(f"URL redirected more than {policy.max_redirects} times", FetchOutcome.HTTP_ERROR)


def _one_hop(target: _Target, address: str, policy: UrlPolicy, deadline: float) -> tuple[int, str, bytes]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(policy)
    kind = _PinnedTLS if target.scheme == "https" else _Pinned
    conn = kind(target.host, target.port, address, timeout=remaining)
    # Per-read timeouts cannot bound a drip of one byte per second: this watchdog shuts the socket
    # when the deadline passes, whatever phase the fetch is in.
    watchdog = threading.Timer(remaining, _shut, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", target.path, headers={"User-Agent": "loupe/0.1", "Accept": f"{policy.media}/*"})
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            return response.status, response.getheader("Location") or "", b""
        if response.status != 200:
            raise UrlFetchError(f"URL answered HTTP {response.status}", FetchOutcome.HTTP_ERROR)
        content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if not content_type.startswith(f"{policy.media}/") and content_type != "application/octet-stream":
            raise UrlFetchError(f"URL did not return {'an image' if policy.media == 'image' else 'a video'} "
                                f"(content-type {content_type or 'none'})", FetchOutcome.NOT_MEDIA)
        declared = response.getheader("Content-Length") or ""
        if declared.isdigit() and int(declared) > policy.max_bytes:
            raise UrlFetchError(f"image at URL is {int(declared) / 1e6:.1f} MB, "
                                f"limit is {policy.max_bytes / 1e6:.0f} MB", FetchOutcome.TOO_LARGE)
        chunks, size = [], 0
        while chunk := response.read(65536):
            size += len(chunk)
            if size > policy.max_bytes:
                raise UrlFetchError(f"image at URL is larger than {policy.max_bytes / 1e6:.0f} MB",
                                    FetchOutcome.TOO_LARGE)
            chunks.append(chunk)
        if time.monotonic() >= deadline:
            raise _timed_out(policy)
        return 200, "", b"".join(chunks)
    except UrlFetchError:
        if time.monotonic() >= deadline:  # the watchdog cut the answer short: that is the real cause
            raise _timed_out(policy) from None
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if time.monotonic() >= deadline or isinstance(exc, TimeoutError):
            raise _timed_out(policy) from None
        raise UrlFetchError(f"cannot fetch URL: {type(exc).__name__}: {exc}"[:300], FetchOutcome.FAILED) from None
    finally:
        watchdog.cancel()
        conn.close()


def _timed_out(policy: UrlPolicy) -> UrlFetchError:
    return UrlFetchError(f"URL took longer than {policy.timeout_seconds:.0f} s", FetchOutcome.TIMEOUT)


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
