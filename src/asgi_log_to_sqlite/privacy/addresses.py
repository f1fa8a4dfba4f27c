"""Client addresses: who connected, who the request came from behind trusted proxies, and what
of the address may be stored (all of it, a truncated network, a daily-salted visitor hash, or
nothing at all).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
from datetime import datetime, timezone
from typing import Any

__all__ = ["ClientAddresses", "VisitorHash", "anonymize", "format_ip", "parse_ip"]

def parse_ip(value: Any) -> Any:
    """An ``ipaddress`` address from text such as ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``."""
    if not isinstance(value, str):
        return None
    text = value.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def format_ip(address: Any) -> str:
    """Text for an address; IPv4-mapped IPv6 always as ``::ffff:1.2.3.4`` (any Python version)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return f"::ffff:{mapped}"
    return str(address)


def anonymize(address: Any, prefixes: tuple[int, int]) -> str:
    """The address with its host bits zeroed; IPv4-mapped IPv6 uses the IPv4 prefix."""
    v4, v6 = prefixes
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network(f"{mapped}/{v4}", strict=False)
            return f"::ffff:{network.network_address}"
        plain = ipaddress.IPv6Address(int(address))  # drops a zone id such as %eth0
        return str(ipaddress.IPv6Network(f"{plain}/{v6}", strict=False).network_address)
    return str(ipaddress.IPv4Network(f"{address}/{v4}", strict=False).network_address)


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            key, _, val = pair.partition("=")
            if key.strip().lower() == "for":
                found = val.strip()
        hops.append(found)
    return hops



class ClientAddresses:
    """The address options of one middleware: ``trusted_proxies``, ``forwarded_header``,
    ``anonymize_ip``."""

    def __init__(self, options: Any) -> None:
        self.trusted = options.trusted_proxies
        self.forwarded = options.forwarded_header.encode("latin-1")
        self.anonymize = options.anonymize_ip

    def _trusted(self, address: Any) -> bool:
        if address is None:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(
            candidate.version == net.version and candidate in net
            for candidate in candidates
            for net in self.trusted
        )

    def _hops(self, headers: Any) -> list[str]:
        values = []
        for item in headers or ():
            try:
                name, value = item
                if bytes(name).lower() == self.forwarded:
                    values.append(bytes(value).decode("latin-1"))
            except Exception:
                continue
        joined = ",".join(values)
        if not joined.strip():
            return []
        if self.forwarded == b"forwarded":
            return _forwarded_for(joined)
        return [hop.strip() for hop in joined.split(",")]

    def resolve(self, peer_text: str | None, headers: Any) -> Any:
        """The client address before anonymization: the peer, or with ``trusted_proxies`` the
        first untrusted hop counted from the right of the forwarding header (a spoofed left-most
        value is never reached past an untrusted hop); None when a hop is not an address."""
        peer = parse_ip(peer_text)
        if not self._trusted(peer):
            return peer if peer is not None else peer_text
        current: Any = peer
        for hop in reversed(self._hops(headers)):
            if not self._trusted(current):
                break
            current = parse_ip(hop)
            if current is None:
                # "unknown", an obfuscated identifier or garbage: nothing left of it is trusted.
                return None
        return current

    def storable(self, address: Any) -> str | None:
        """What of ``address`` is stored: the whole of it, or its network when anonymizing."""
        if address is None:
            return None
        if isinstance(address, str):
            if not self.anonymize:
                return address
            address = parse_ip(address)
            if address is None:
                # Not an IP (a unix socket, a test client's name): nothing to truncate.
                return None
        if self.anonymize:
            return anonymize(address, self.anonymize)
        return format_ip(address)


class VisitorHash:
    """A hash of address + user agent + host under a salt that changes every UTC day: unique
    visitors can be counted per day, and no hash can be traced to an address afterwards."""

    def __init__(self, key: bytes | bool) -> None:
        self.key = key
        self._salts: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, address: Any, user_agent: str | None, host: str | None, start: Any) -> Any:
        if address is None:
            return None
        try:
            day = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d")
        except (OverflowError, OSError, ValueError, TypeError):
            return None
        salt = self._salts.get(day)
        if salt is None:
            with self._lock:
                if isinstance(self.key, bytes):
                    salt = hmac.new(self.key, day.encode(), hashlib.sha256).digest()
                else:
                    salt = secrets.token_bytes(32)
                # Forget earlier days' salts: their hashes can no longer be recomputed here.
                self._salts = {d: s for d, s in self._salts.items() if d > day}
                self._salts[day] = salt
        if not isinstance(address, str):
            address = format_ip(address)
        message = f"{address}\n{user_agent or ''}\n{host or ''}".encode("utf-8", "replace")
        return hmac.new(salt, message, hashlib.sha256).hexdigest()[:16]
