"""Ray cluster addresses: checked in configs without importing Ray, and probed before
joining, so an address that does not answer, or answers but is not a Ray head, is one
error line within seconds, not a hang."""

from __future__ import annotations

import ipaddress
import os
import socket
import time

from ouroboros.errors import UserError

CONNECT_TIMEOUT_S = 10.0  # for the TCP probe of a head node
HANDSHAKE_TIMEOUT_S = 5.0  # for its HTTP/2 answer
# A Ray head's GCS and the Ray client server speak gRPC, i.e. HTTP/2: to the client's
# connection preface (RFC 9113 section 3.4) the server answers with a SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_FRAME = 0x04


def _check_host(host: str) -> None:
    """An IP address, or a DNS name whose labels are 1 to 63 characters (253 in all):
    anything else makes the resolver raise UnicodeError instead of failing cleanly."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name = host.removesuffix(".")
    labels = name.split(".")
    try:
        size = len(name.encode("idna"))
    except UnicodeError:
        raise ValueError(host) from None
    if not name or size > 253 or any(not 0 < len(label.encode("idna")) <= 63 for label in labels):
        raise ValueError(host)
    if any(c.isspace() or c in "/\\@?#%" for c in name):
        raise ValueError(host)


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    try:
        _check_host(host)
    except (ValueError, UnicodeError):
        raise ValueError(address) from None
    return host, int(port)


def check_address(where: str, address: str) -> str:
    """`address` is ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, its host an IP address or
    a DNS name of labels 1 to 63 characters long."""
    try:
        split_address(address)
    except ValueError:
        raise UserError(f"{where} must be auto, HOST:PORT or ray://HOST:PORT (a Ray head node, e.g. "
                        f"10.0.0.1:6379, host names of labels 1 to 63 characters); got {address!r}") from None
    return address


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S,
                    handshake_timeout: float = HANDSHAKE_TIMEOUT_S) -> None:
    """Raise UserError unless a Ray head answers at `address`: something accepts TCP
    connections within `timeout` s and answers the HTTP/2 preface with a SETTINGS frame
    within `handshake_timeout` s (a gRPC server; not a web server, nor a silent one)."""
    where = split_address(check_address("the Ray address", address))
    if where is None:
        return
    fix = "start its head with `ray start --head` or give the address it printed with --ray-address"
    try:
        conn = socket.create_connection(where, timeout=timeout)
    except (OSError, UnicodeError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
        raise UserError(f"the Ray cluster at {address} does not answer ({reason}); {fix}") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):  # a TLS handshake comes first: not probed
        conn.close()
        return
    with conn:
        header = _http2_answer(conn, handshake_timeout)
    if len(header) < 9 or header[3] != SETTINGS_FRAME:
        seen = "no answer" if not header else f"it answered {header[:16]!r}"
        raise UserError(f"{address} accepts connections but is not a Ray head ({seen} to the gRPC handshake); "
                        f"{fix}")


def _http2_answer(conn: socket.socket, timeout: float) -> bytes:
    """The first 9 bytes (a frame header) the server sends after the HTTP/2 preface;
    fewer when it closes or stays silent for `timeout` s."""
    deadline = time.monotonic() + timeout
    header = b""
    try:
        conn.sendall(HTTP2_PREFACE)
        while len(header) < 9:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn.settimeout(left)
            chunk = conn.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    except OSError:  # reset, timeout
        pass
    return header
