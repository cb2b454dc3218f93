"""URL templates of custom HTTP actions: checked when an admin saves one, filled in when an
operation runs.

A template fixes the scheme, host, port and every path separator; parameters (``{id}``) only
ever fill the inside of path segments. Values are percent-encoded whole (``/``, ``?``, ``#``,
``@``, ``%`` and CR/LF included), and a value that would be a dot segment is refused, so no
value can change where the request goes. The filled URL is parsed again and compared with the
template before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,40})\}")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# RFC 3986 path characters, less "%" (no pre-encoded bytes: they could hide a "/" or "..").
_FIXED_PATH = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")
_FIXED_QUERY = re.compile(r"^[A-Za-z0-9._~=&,:+-]*$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_VALUE_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Names that resolve to a cloud's instance metadata: never the admin API of a service.
METADATA_HOSTS = {"metadata", "metadata.google.internal", "metadata.azure.com"}


class UnsafeTemplate(ValueError):
    """The template could send a request somewhere other than where it says."""


class UnsafeValue(ValueError):
    """A parameter's value cannot be put into the URL safely."""


@dataclass(frozen=True)
class UrlTemplate:
    """A checked template: the fixed origin, the path with its placeholders, a fixed query."""

    origin: str  # scheme://host[:port]
    path: str
    query: str
    names: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")

    def fill(self, values: Mapping[str, object]) -> str:
        """The URL with each placeholder replaced by its value, percent-encoded whole."""

        def encoded(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise UnsafeValue(f"No value for {{{name}}}.")
            return quote(safe_value(name, str(values[name])), safe="")

        url = self.origin + PLACEHOLDER.sub(encoded, self.path)
        url += f"?{self.query}" if self.query else ""
        # Belt and braces: the filled URL goes to the same place, with the same segments.
        parts = urlsplit(url)
        if (
            f"{parts.scheme}://{parts.netloc}" != self.origin
            or parts.path.count("/") != self.path.count("/")
            or parts.query != self.query
            or parts.fragment
        ):
            raise UnsafeValue("The values would change where the request goes.")
        return url


def safe_value(name: str, value: str) -> str:
    if value == "":
        raise UnsafeValue(f"{name} is empty.")
    if value in (".", ".."):
        raise UnsafeValue(f"{name} cannot be {value!r}: it would move up the path.")
    if _VALUE_CONTROL.search(value):
        raise UnsafeValue(f"{name} contains control characters.")
    return value


def _check_host(host: str) -> None:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    if address is None:
        if host.startswith("[") or not _HOSTNAME.match(host):
            raise UnsafeTemplate(f"{host!r} is not a host name or IP address.")
        if host.lower().rstrip(".") in METADATA_HOSTS:
            raise UnsafeTemplate(f"{host} is a cloud metadata service, not a service's API.")
        return
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        raise UnsafeTemplate(
            f"{host} is a link-local, unspecified or multicast address (cloud metadata "
            "services live there), not a service's API."
        )


def parse_template(text: str) -> UrlTemplate:
    """The checked template, or UnsafeTemplate saying what is wrong with it."""
    if _CONTROL.search(text) or "\\" in text:
        raise UnsafeTemplate("The URL contains spaces, control characters or backslashes.")
    match = re.match(r"^(https?)://([^/?#]*)(.*)$", text)
    if match is None:
        raise UnsafeTemplate("The URL must start with http:// or https:// and a host.")
    scheme, authority, rest = match.groups()
    if "{" in authority or "}" in authority:
        raise UnsafeTemplate("The host and port are fixed: parameters go in the path only.")
    if "@" in authority:
        raise UnsafeTemplate(
            "No user@ or user:password@ in the URL: the secret goes in the bearer token field."
        )
    host, port = authority, ""
    port_match = re.match(r"^(.*?)(?::([0-9]{1,5}))?$", authority)
    if port_match is not None and port_match.group(2) is not None:
        host, port = port_match.group(1), port_match.group(2)
        if not 0 < int(port) < 65536:
            raise UnsafeTemplate(f"Port {port} does not exist.")
    if not host:
        raise UnsafeTemplate("The URL has no host.")
    if ":" in host and not host.startswith("["):
        raise UnsafeTemplate(f"{authority!r} is not host[:port].")
    _check_host(host)
    if "#" in rest:
        raise UnsafeTemplate("A URL sent to a server has no #fragment.")
    path, _, query = rest.partition("?")
    path = path or "/"
    if not path.startswith("/"):
        raise UnsafeTemplate("The path must start with /.")
    if PLACEHOLDER.search(query) or "{" in query or "}" in query:
        raise UnsafeTemplate("Parameters go in the path only; the query string is fixed.")
    if not _FIXED_QUERY.match(query):
        raise UnsafeTemplate("The query string may hold only letters, digits and . _ ~ = & , : + -")
    for segment in path.split("/"):
        if segment in (".", ".."):
            raise UnsafeTemplate("The path cannot contain . or .. segments.")
    fixed = PLACEHOLDER.sub("", path)
    if "{" in fixed or "}" in fixed:
        raise UnsafeTemplate(
            "A placeholder is written {name}: a letter or _, then letters, digits or _."
        )
    if not _FIXED_PATH.match(fixed):
        raise UnsafeTemplate(
            "The path may hold only letters, digits, / and . _ ~ - ! $ & ' ( ) * + , ; = : @ "
            "(no %-encoded characters)."
        )
    names = tuple(PLACEHOLDER.findall(path))
    if len(set(names)) != len(names):
        raise UnsafeTemplate("Each parameter appears once in the path.")
    return UrlTemplate(origin=f"{scheme}://{authority}", path=path, query=query, names=names)
