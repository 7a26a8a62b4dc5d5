"""How the CLI reads and prints: argument types, aligned tables for people, JSON (--json) for scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import msgspec


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def as_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def when(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "-"


def port_number(text: str) -> int:
    """argparse type for --port: 1-65535 (uvicorn would print ":99999" and listen elsewhere)."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def private_address(text: str) -> tuple[str, int]:
    """argparse type for --metrics-bind HOST:PORT: what is served there has no credential, so HOST must be a
    loopback or private IP address (not 0.0.0.0, not a public one)."""
    import ipaddress

    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with an IP address as HOST") from None
    if not sep or address.is_unspecified or address.is_global or not (address.is_private or address.is_loopback):
        raise argparse.ArgumentTypeError(f"{host} is not a loopback or private address: metrics served there "
                                         "need no credential (use /metrics on the API port with a token instead)")
    return str(address), port_number(port)


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: 0 or less is refused with a usage message, not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value
