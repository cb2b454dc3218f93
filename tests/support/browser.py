"""The browser tests' fixtures and helpers, for every test directory (a pytest plugin named in
tests/conftest.py): headless Chromium (the distribution's, driven by Playwright for Python)
against pytest-django's live server. Nothing is downloaded: `executable_path` points at the
installed browser.

Every page a test opens reports what went wrong in it (console errors, uncaught exceptions,
Content-Security-Policy violations, failed requests), so that a test can assert a clean page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    expect,
    sync_playwright,
)

from tests.factories import PASSWORD

CHROMIUM_ARGS = [
    "--disable-dev-shm-usage",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Runs before any script of every document. Playwright injects it outside the page's CSP,
# so it sees the violations the CSP reports without needing an exception in the policy.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} ` +
    `(${event.sourceFile || document.location.href}:${event.lineNumber})`
  );
});
"""


@dataclass
class PageProblems:
    """What went wrong in the pages of one test, as readable lines."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [
            *(f"console: {line}" for line in self.console_errors),
            *(f"exception: {line}" for line in self.page_errors),
            *(f"CSP: {line}" for line in self.csp_violations),
            *(f"HTTP: {line}" for line in self.failed_responses),
        ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM, called from the
    # same thread by the test, would otherwise refuse to run (scripts/test_env.sh sets it too).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium"),
                headless=True,
                args=CHROMIUM_ARGS,
            )
            yield chromium
            chromium.close()


@pytest.fixture
def plain_static_files(settings: Any) -> None:
    """The live server serves /static/ through the finders, which know the files by their
    plain names; the manifest storage used when DEBUG is off would ask for hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(
    browser: Browser, live_server: Any, plain_static_files: None, page_problems: PageProblems
) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(15_000)

    def on_csp_violation(description: str) -> None:
        page_problems.csp_violations.append(description)

    context.expose_function("reportCspViolation", on_csp_violation)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    new_page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page_problems.console_errors.append(f"{message.text} ({message.location['url']})")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            page_problems.failed_responses.append(f"{response.status} {response.url}")

    new_page.on("console", on_console)
    new_page.on(
        "pageerror",
        lambda error: page_problems.page_errors.append(f"{error} on {new_page.url}\n{error.stack}"),
    )
    new_page.on("response", on_response)

    def on_request_failed(request: Request) -> None:
        # A request cut short by the next navigation is no defect of the page.
        if request.failure != "net::ERR_ABORTED":
            page_problems.failed_responses.append(f"{request.failure} {request.url}")

    new_page.on("requestfailed", on_request_failed)
    yield new_page
    context.close()


@pytest.fixture
def screenshot_dir() -> Path:
    directory = Path(django_settings.VAR_DIR) / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=f"Good to see you, {username}")).to_be_visible()


def save_screenshot(page: Page, path: Path) -> None:
    # Animations off: a button caught mid-transition (the autofocused "Go back") looks broken.
    page.screenshot(path=path, full_page=True, animations="disabled")


def assert_assets_applied(page: Page) -> None:
    """The stylesheets, the icon font and the scripts really arrived and took effect: a page
    can render its HTML perfectly and still be unusable without them."""
    # The scripts are deferred: they have run only once the document has loaded.
    page.wait_for_load_state("load")
    applied = page.evaluate(
        """async () => {
          await document.fonts.ready;
          const root = getComputedStyle(document.documentElement);
          const banner = document.querySelector(".env-banner");
          return {
            bootstrap: root.getPropertyValue("--bs-primary").trim(),
            appCss: banner ? getComputedStyle(banner).paddingLeft : null,
            iconFont: [...document.fonts].some(
              (font) => font.family.includes("bootstrap-icons") && font.status === "loaded"
            ),
            htmx: typeof window.htmx === "object",
            bootstrapJs: typeof window.bootstrap === "object",
          };
        }"""
    )
    assert applied == {
        "bootstrap": "#0d6efd",
        "appCss": "16px",
        "iconFont": True,
        "htmx": True,
        "bootstrapJs": True,
    }, applied
