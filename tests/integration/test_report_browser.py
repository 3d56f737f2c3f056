"""The report in a real browser: headless Chromium loads it, every figure decodes, the
console stays silent, and a screenshot is saved.

Chromium is found on PATH, or installed with ``apt-get install -y chromium`` when the test
runs as root *and* ``CI`` or ``DISTBENCH_INSTALL_BROWSER`` is set; otherwise the test is
skipped with that reason. ``DISTBENCH_SCREENSHOT_DIR`` (optional) receives a copy of the
screenshot for a person to look at.

How the check works: a copy of the report gets a probe script as the first thing in
``<head>``. It records ``console.error`` calls, uncaught errors, unhandled rejections and
resources that failed to load (capturing ``error`` listener), and on ``load`` writes them
with every ``<img>``'s ``naturalWidth`` into a ``<pre>`` that ``--dump-dom`` prints.
Independently, ``--enable-logging=stderr`` makes Chromium log every console message as a
``CONSOLE`` line; the report has no scripts of its own, so there must be none. A control
page with a broken image and a console error proves both channels still see errors.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import pytest

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "distbench.cli.main"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--hide-scrollbars",
)
BROWSER_TIMEOUT_S = 120
CONSOLE_LINE = re.compile(r":CONSOLE(?::\d+)?\]\s*(.*)")
PROBE_OUT = re.compile(r'<pre id="distbench-probe">(.*?)</pre>', re.S)
PROBE = """<script>
(function () {
  var errors = [];
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      errors.push("failed to load <" + t.tagName.toLowerCase() + "> " + (t.alt || ""));
    } else {
      errors.push("uncaught: " + e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, complete: img.complete, width: img.naturalWidth,
              height: img.naturalHeight};
    });
    var out = document.createElement("pre");
    out.id = "distbench-probe";
    var sections = Array.prototype.map.call(document.querySelectorAll("section"),
      function (el) { return el.id; });
    out.textContent = JSON.stringify({images: images, errors: errors, sections: sections,
      width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth});
    document.body.appendChild(out);
    if (window.parent !== window) { window.parent.postMessage(out.textContent, "*"); }
  });
})();
</script>"""
#: A page that shows another in a frame of a phone's width (headless Chromium's windows
#: are at least 500 px wide) and copies the framed probe's report into its own DOM.
PHONE_FRAME = """<!DOCTYPE html><html><head><title>phone</title></head>
<body style="margin:0"><iframe src="$src" style="width:${width}px;height:${height}px;border:0">
</iframe><script>
window.addEventListener("message", function (e) {
  var out = document.createElement("pre");
  out.id = "distbench-probe";
  out.textContent = e.data;
  document.body.appendChild(out);
});
</script></body></html>"""
CONTROL_PAGE = """<!DOCTYPE html><html><head><title>control</title></head><body>
<img alt="good" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUl\
EQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==">
<img alt="broken" src="data:image/png;base64,AAAA">
<script>console.error("control error");</script></body></html>"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_allowed() -> tuple[bool, str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not root"
    if not (os.environ.get("CI") or os.environ.get("DISTBENCH_INSTALL_BROWSER")):
        return False, "neither CI nor DISTBENCH_INSTALL_BROWSER is set"
    if shutil.which("apt-get") is None:
        return False, "no apt-get on this system"
    return True, ""


def ensure_browser() -> str:
    """Chromium's path; installs Debian's package where allowed, else skips the test."""
    found = find_browser()
    if found:
        return found
    allowed, why = install_allowed()
    if not allowed:
        pytest.skip(
            f"chromium not installed and not installing it: {why} "
            "(apt-get install -y chromium, or set CI / DISTBENCH_INSTALL_BROWSER as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr[-2000:]}"
    found = find_browser()
    assert found, "apt-get installed chromium but no browser binary is on PATH"
    return found


@dataclass
class PageState:
    images: list[dict[str, Any]]
    errors: list[str]  # seen by the probe
    console: list[str]  # CONSOLE lines Chromium logged on stderr
    sections: list[str]  # the ids of the page's <section>s, in order
    width: int  # the viewport's width, CSS pixels
    scroll_width: int  # the page's width: wider than the viewport means sideways scrolling


def browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with a fresh profile directory."""
    command = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, stdin=subprocess.DEVNULL
    )


def with_probe(page: Path, target: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text)
    assert head is not None, f"{page} has no <head>"
    target.write_text(text[: head.end()] + PROBE + text[head.end() :], encoding="utf-8")
    return target


#: Window sizes the report is checked at: a desktop and a phone (CSS pixels).
DESKTOP, PHONE = (1400, 2600), (390, 844)


#: Headless Chromium's windows are never narrower than this (CSS pixels).
NARROWEST_WINDOW = 500


def framed(page: Path, size: tuple[int, int], work: Path) -> Path:
    """``page`` itself, or below the narrowest window a page framing it at ``size``."""
    if size[0] >= NARROWEST_WINDOW:
        return page
    frame = work / f"frame-{size[0]}-{page.name}"
    frame.write_text(
        Template(PHONE_FRAME).substitute(src=page.as_uri(), width=size[0], height=size[1]),
        encoding="utf-8",
    )
    return frame


def load_page(binary: str, page: Path, work: Path, size: tuple[int, int] = DESKTOP) -> PageState:
    probed = framed(with_probe(page, work / f"probed-{page.name}"), size, work)
    done = browser(
        binary,
        work / f"profile-{page.stem}-{size[0]}",
        f"--window-size={size[0]},{size[1]}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probed.as_uri(),
    )
    match = PROBE_OUT.search(done.stdout)
    assert match, (
        f"the probe did not report (exit {done.returncode}); stderr tail: {done.stderr[-1500:]}"
    )
    found = json.loads(html.unescape(match.group(1)))
    console = [m.group(1) for line in done.stderr.splitlines() if (m := CONSOLE_LINE.search(line))]
    return PageState(
        found["images"],
        found["errors"],
        console,
        found.get("sections", []),
        int(found.get("width", 0)),
        int(found.get("scrollWidth", 0)),
    )


def screenshot(
    binary: str, page: Path, target: Path, work: Path, size: tuple[int, int] = DESKTOP
) -> Path:
    shown = framed(page, (size[0], size[1] * 4), work)
    done = browser(
        binary,
        work / f"profile-shot-{size[0]}",
        f"--window-size={max(size[0], NARROWEST_WINDOW)},{size[1] * 4}",
        "--virtual-time-budget=10000",
        f"--screenshot={target}",
        shown.as_uri(),
    )
    assert target.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-1500:]}"
    return target


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_browser()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Path:
    """A real report: a small profiled suite run through the CLI, then ``report``."""
    work = tmp_path_factory.mktemp("suite")
    run = subprocess.run(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--strategy",
            "sequential,ddp",
            "--workers",
            "1,2",
            "--steps",
            "5",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--profile-ops",
            "--db",
            str(work / "r.db"),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = work / "out"
    made = subprocess.run(
        [*CLI, "report", "--db", str(work / "r.db"), "--out", str(out)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return out / "report.html"


@pytest.mark.timeout(600)
def test_control_page_errors_are_detected(chromium: str, tmp_path: Path) -> None:
    """Without this, a Chromium that stopped logging would make the real check blind."""
    page = tmp_path / "control.html"
    page.write_text(CONTROL_PAGE, encoding="utf-8")
    state = load_page(chromium, page, tmp_path)
    widths = {image["alt"]: image["width"] for image in state.images}
    assert widths == {"good": 1, "broken": 0}
    assert any("control error" in e for e in state.errors)
    assert any("failed to load <img> broken" in e for e in state.errors)
    assert any("control error" in line for line in state.console)


def keep_screenshot(shot: Path) -> Path:
    """A copy for a person to look at: under ``DISTBENCH_SCREENSHOT_DIR``, else
    ``test-output/screenshots`` in the checkout; its path is printed (``pytest -s``)."""
    keep = Path(
        os.environ.get("DISTBENCH_SCREENSHOT_DIR")
        or Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
    )
    keep.mkdir(parents=True, exist_ok=True)
    kept = Path(shutil.copy(shot, keep / shot.name))
    print(f"report screenshot: {kept}")
    return kept


@pytest.mark.timeout(900)
def test_report_renders_in_chromium(chromium: str, report: Path, tmp_path: Path) -> None:
    """At desktop width: every figure decodes, the console stays silent, and the sections
    follow a reader's questions in order."""
    figures = sorted(report.parent.glob("*.png"))
    state = load_page(chromium, report, tmp_path)
    assert len(state.images) == len(figures) >= 5  # breakdown, throughput, speedup, ...
    broken = [
        image["alt"]
        for image in state.images
        if not image["complete"] or image["width"] == 0 or image["height"] == 0
    ]
    assert not broken, f"figures that did not load: {broken}"
    assert state.errors == []
    assert state.console == [], f"console messages: {state.console}"
    assert state.sections == [
        "fastest",
        "findings",
        "scaling",
        "time",
        "why",
        "resources",
        "runs",
    ]  # fmt: skip  (no run trained to a target: no "convergence" section)
    shot = screenshot(chromium, report, tmp_path / "report-desktop.png", tmp_path)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    keep_screenshot(shot)


@pytest.mark.timeout(900)
def test_report_fits_a_phone(chromium: str, report: Path, tmp_path: Path) -> None:
    """At a phone's width the page never scrolls sideways: wide tables scroll inside their
    own box and figures shrink to the width."""
    state = load_page(chromium, report, tmp_path, PHONE)
    assert state.width == PHONE[0]
    assert state.scroll_width <= state.width, (
        f"the page is {state.scroll_width} px wide in a {state.width} px viewport"
    )
    assert state.errors == [] and state.console == []
    shot = screenshot(chromium, report, tmp_path / "report-phone.png", tmp_path, PHONE)
    assert shot.read_bytes().startswith(b"\x89PNG")
    keep_screenshot(shot)
