"""Container image references, checked against the OCI distribution grammar before anything
is sent to a cluster (github.com/distribution/reference, reference.go)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128


def validate_image_reference(value: str) -> None:
    """Raise ValidationError saying what is wrong with ``value`` as an image reference."""
    if not value:
        raise ValidationError("Give an image reference, e.g. registry.example.com/team/api:2.15.0.")
    if any(character.isspace() for character in value):
        raise ValidationError("An image reference cannot contain spaces.")
    if bad := sorted(set(re.findall(r"[;&|`$<>(){}\\'\"!*?#]", value))):
        raise ValidationError(
            f"An image reference cannot contain {' '.join(bad)}: only letters, digits, "
            "'.', '_', '-', '/', ':' and '@'."
        )
    last = value.rsplit("/", 1)[-1]
    tag = last.split("@", 1)[0].split(":", 1)[1] if ":" in last.split("@", 1)[0] else ""
    if len(tag) > MAX_TAG_LENGTH:
        raise ValidationError(
            f"The tag is {len(tag)} characters long; a tag has at most {MAX_TAG_LENGTH}."
        )
    match = _REFERENCE.match(value)
    if match is None:
        first, _, rest = value.split("@", 1)[0].partition("/")
        has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
        repository = (rest if has_registry else value.split("@", 1)[0]).split(":", 1)[0]
        if repository != repository.lower():
            raise ValidationError(
                "Repository paths must be lowercase (only the registry host may have capitals)."
            )
        raise ValidationError(
            "This is not a valid image reference: expected [registry/]path[:tag][@digest], "
            "e.g. registry.example.com/team/api:2.15.0."
        )
    if len(match.group("name")) > MAX_NAME_LENGTH:
        raise ValidationError(f"The image name is longer than {MAX_NAME_LENGTH} characters.")
    if match.group("tag") is None and match.group("digest") is None:
        raise ValidationError(
            "Name a tag or a digest (…:2.15.0 or …@sha256:…): an untagged image means "
            "'latest', which cannot be rolled back to reliably."
        )
