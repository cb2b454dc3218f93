"""URL templates: what an admin may save, and how values go into the path (encoded whole,
never able to change the host, the scheme or the path's segments)."""

from __future__ import annotations

import pytest

from apps.http_actions.parameters import ParameterSpec, parse_lines
from apps.http_actions.url_templates import UnsafeTemplate, UnsafeValue, parse_template

TEMPLATE = "https://api.maintainuk.com/api/v1/admin/dead-letters/{id}/reprocess"


def test_it_reads_a_runbook_template() -> None:
    template = parse_template(TEMPLATE)
    assert template.origin == "https://api.maintainuk.com"
    assert template.path == "/api/v1/admin/dead-letters/{id}/reprocess"
    assert template.names == ("id",)


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("https://{host}/x", "host and port are fixed"),
        ("{base}/api/v1/jobs", "must start with http"),
        ("https://api.example.com:{port}/x", "host and port are fixed"),
        ("https://api.example.com{suffix}/x", "host and port are fixed"),
        ("https://api.example.com@evil.example/x", "No user@"),
        ("https://admin:hunter2@api.example.com/x", "No user@"),
        ("ftp://api.example.com/x", "must start with http"),
        ("file:///etc/passwd", "must start with http"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://0.0.0.0:8080/x", "unspecified"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://api.example.com/jobs/../../admin", ". or .. segments"),
        ("https://api.example.com/jobs/%2e%2e/admin", "no %-encoded"),
        ("https://api.example.com/jobs%2F{id}", "no %-encoded"),
        ("https://api.example.com/jobs?id={id}", "path only"),
        ("https://api.example.com/jobs/{id}#x", "fragment"),
        ("https://api.example.com/jobs/{id}\r\nHost: evil", "control characters"),
        ("https://api.example.com/jobs/{id}\\..\\x", "backslashes"),
        ("https://api.example.com/jobs/{1d}", "placeholder is written"),
        ("https://api.example.com/jobs/{id}/{id}", "appears once"),
        ("https://api.example.com:99999/x", "does not exist"),
    ],
)
def test_ssrf_ish_templates_are_refused_with_a_reason(template: str, says: str) -> None:
    with pytest.raises(UnsafeTemplate, match=r"(?i)" + says.replace(".", r"\.")):
        parse_template(template)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("../admin", "..%2Fadmin"),
        ("%2F..%2Fadmin", "%252F..%252Fadmin"),
        ("@evil.example", "%40evil.example"),
        ("x?admin=1#y", "x%3Fadmin%3D1%23y"),
        ("a/b", "a%2Fb"),
        ("http://evil.example/", "http%3A%2F%2Fevil.example%2F"),
    ],
)
def test_values_are_encoded_into_one_path_segment(value: str, encoded: str) -> None:
    template = parse_template("https://api.example.com/queues/{name}/purge")
    url = template.fill({"name": value})
    assert url == f"https://api.example.com/queues/{encoded}/purge"


@pytest.mark.parametrize("value", ["..", ".", "", "a\r\nHost: evil.example", "a\nb", "\x00"])
def test_values_that_would_move_the_request_are_refused(value: str) -> None:
    template = parse_template("https://api.example.com/queues/{name}/purge")
    with pytest.raises(UnsafeValue):
        template.fill({"name": value})


def test_typed_parameters_check_their_values() -> None:
    number = ParameterSpec("id", "integer")
    assert number.check("42") == 42
    for bad in ("-1", "4 2", "42;rm -rf /", "../1", "0x10", "1e3", ""):
        with pytest.raises(UnsafeValue, match="whole number"):
            number.check(bad)
    region = ParameterSpec("region", "string", r"[a-z]{2}-[a-z]+")
    assert region.check("eu-west") == "eu-west"
    for bad in ("EU-west", "eu-west/../x", "eu-west\r\n", ".."):
        with pytest.raises(UnsafeValue):
            region.check(bad)
    # Without a pattern, a string is a plain name: no slash, no @, no %.
    plain = ParameterSpec("queue", "string")
    for bad in ("a/b", "@evil", "%2F", "a b"):
        with pytest.raises(UnsafeValue):
            plain.check(bad)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("id number", "integer or string"),
        ("1d integer", "not a parameter name"),
        ("id integer [0-9]+", "takes no pattern"),
        ("name string ([a-z]", "pattern of name is invalid"),
        ("id integer\nid integer", "declared twice"),
    ],
)
def test_bad_parameter_declarations_are_refused_by_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_lines(text)
