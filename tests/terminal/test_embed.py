"""The owner's site embeds jupybot: `<jupybot-terminal>` (/embed.js) and the contact `fetch`
snippet, both as docs/embed.md writes them, on a page served from a second origin (a static
server on 127.0.0.2), in real headless Chromium. From the origin listed in `web.origins` the
quiz runs, comes back from a lost connection, ends and runs again, and the form gets 202; the
same page from an origin not listed is refused for both, and nothing it sent is stored.

The browser runs in a subprocess (`python -m tests.terminal.test_embed URL URL DIR`), as for the
page's tests, so Playwright's event loop stays out of the test process.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.web.test.requesthelper import DummyRequest

from jupybot.terminal.page import EmbedScript
from tests.harness import ROOT, ChildProcess, JupybotProcess, jupybot_config

SITE_ADDRESS = "127.0.0.2"  # another loopback address: another origin than jupybot's
DOCUMENTED_SERVER = "https://jupybot.example.org"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>Ada Lovelace</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 1.5rem auto;
    padding: 0 1rem; background: #f7f7f5; color: #222; }}
  form {{ display: grid; gap: 0.5rem; max-width: 30rem; }}
</style>
</head>
<body>
<h1>Ada Lovelace</h1>
<p>A quiz I wrote, running live:</p>
{terminal}
<h2>Write to me</h2>
{contact}
</body>
</html>
"""


def documented_snippets(server: str) -> tuple[str, str]:
    """docs/embed.md's two HTML snippets (the element, the contact form), pointed at
    C{server}."""
    blocks = re.findall(r"```html\n(.*?)```", (ROOT / "docs" / "embed.md").read_text(), re.S)
    (terminal,) = [block for block in blocks if "<jupybot-terminal" in block]
    (contact,) = [block for block in blocks if "/contact" in block]
    return terminal.replace(DOCUMENTED_SERVER, server), contact.replace(DOCUMENTED_SERVER, server)


@dataclass
class Sites:
    jupybot: JupybotProcess
    listed: str  # the owner's site, in web.origins
    foreign: str  # the same page from an origin that is not
    state: Path  # jupybot's storage.path


def static_site(directory: Path) -> tuple[ChildProcess, str]:
    site = ChildProcess(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            SITE_ADDRESS,
            "--directory",
            str(directory),
        ],
        name="static site",
    )
    port = site.wait_for(r"Serving HTTP on \S+ port (\d+)").group(1)
    return site, f"http://{SITE_ADDRESS}:{port}"


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    workdir = tmp_path_factory.mktemp("embed")
    pages = workdir / "site"
    pages.mkdir()
    started: list[ChildProcess] = []
    try:
        listed_site, listed = static_site(pages)
        started.append(listed_site)
        foreign_site, foreign = static_site(pages)
        started.append(foreign_site)
        programs = (
            "programs:\n"
            '  - {name: quiz, title: Quiz, argv: [python3, "{demos}/quiz.py"]}\n'
            "  - {name: size, argv: [sh, -c, 'stty size; exec cat']}\n"
        )
        config = jupybot_config(workdir, programs, web=f"  origins: ['{listed}']\n")
        jupybot = JupybotProcess(config, workdir)
        started.append(jupybot)
        jupybot.wait_listening()
        jupybot.wait_for("terminal: running")
        terminal, contact = documented_snippets(jupybot.base_url)
        # What docs/embed.md tells a site with a Content-Security-Policy to allow (the page's
        # own inline script is the contact snippet).
        policy = (
            "default-src 'self'; script-src 'self' 'unsafe-inline' {jupybot}; "
            "connect-src {jupybot} {websocket}; style-src 'self' 'unsafe-inline'"
        ).format(jupybot=jupybot.base_url, websocket=jupybot.base_url.replace("http", "ws", 1))
        (pages / "index.html").write_text(
            PAGE.format(policy=policy, terminal=terminal, contact=contact)
        )
        yield Sites(jupybot, listed, foreign, workdir / "var")
    finally:
        for process in reversed(started):
            process.stop()


def browse(sites: Sites, tmp_path: Path) -> dict[str, Any]:
    shots = Path(os.environ.get("JUPYBOT_SCREENSHOTS", tmp_path)) / "embed"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.terminal.test_embed",
            sites.listed + "/",
            sites.foreign + "/",
            str(shots),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert seen.pop("page_errors") == []
    return seen


@pytest.mark.peers
def test_the_owners_site_runs_a_program_and_sends_a_message_and_others_are_refused(
    sites: Sites, tmp_path: Path
) -> None:
    seen = browse(sites, tmp_path)
    jupybot = sites.jupybot

    # The same page from an origin not in web.origins (visited first): nothing starts,
    # nothing is stored, and the page says so.
    foreign = seen["foreign"]
    assert foreign["state"] == "ended"
    assert foreign["notice"].startswith("Could not start the program")
    assert foreign["output"] == ""
    assert foreign["contact_result"] == "The message could not be sent; please try again later."
    assert foreign["contact_statuses"] == []  # the preflight was refused: no POST at all
    assert foreign["plain_post"] == "opaque"  # a form POST needs no preflight, and is refused
    jupybot.wait_for(rf"terminal: refused a websocket from origin {re.escape(sites.foreign)} ")

    # The listed origin: the element runs the quiz and shows its output.
    listed = seen["listed"]
    assert listed["globals"] == {"Terminal": "undefined", "JupybotWire": "undefined"}
    assert listed["title"] == "Quiz"  # the catalogue's, from READY
    assert listed["rows"] == 16  # rows="16"
    assert listed["styled"] == "absolute"  # the notice floats over the screen
    assert listed["background"] == "rgb(255, 255, 255)"  # theme="light"
    assert "Welcome to the quiz!" in listed["first_screen"]
    # No cursor is drawn before the terminal was focused: the bar says where to type.
    assert listed["status_before_click"] == "running · click to type"
    assert listed["status_after_click"] == "running"
    # A lost connection: greyed, said, then the same session resumed.
    assert listed["offline_notice"].startswith("Connection lost")
    assert listed["same_session_after_outage"]
    assert "Ada, you scored" in listed["end_screen"]
    assert "── Program finished ──" in listed["end_screen"]
    assert listed["end_state"] == "finished"
    assert listed["end_notice"] == "Program finished."
    assert listed["run_again_visible"]
    assert listed["new_session_after_run_again"]
    assert "Welcome to the quiz!" in listed["screen_after_run_again"]
    assert "you scored" not in listed["screen_after_run_again"]  # a clean screen
    # An element with `server`, `cols` and `height`: the PTY got the size the element drew.
    sized = listed["sized"]
    assert sized["pty"] == sized["term"]  # "rows cols", as `stty size` prints it
    assert sized["term"].endswith(" 60")
    assert sized["height"] == 200
    assert int(sized["term"].split()[0]) >= 7  # the rows fill the 200 px
    assert sized["dark"] == "rgb(0, 0, 0)"  # the default theme, then changed to light
    assert sized["light"] == "rgb(255, 255, 255)"
    # The documented fetch snippet: 202, and the visitor is thanked.
    assert listed["contact_statuses"] == [202]
    assert listed["contact_result"] == "Thank you: your message is on its way."

    # Only the listed page's message was stored: it is the server's first, and delivered.
    jupybot.wait_for(r"contact: message 1 delivered to file")
    lines = (sites.state / "contact-messages.jsonl").read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["Loved the quiz (listed)."]


@pytest.mark.peers
def test_embed_js_is_one_gzipped_script_for_any_site_asked_again_each_visit(sites: Sites) -> None:
    url = sites.jupybot.base_url + "/embed.js"
    asked = urllib.request.Request(
        url, headers={"Accept-Encoding": "gzip", "Origin": sites.foreign}
    )
    with urllib.request.urlopen(asked, timeout=30) as response:
        headers, body = response.headers, response.read()
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Content-Encoding"] == "gzip"
    assert len(body) < 100_000  # xterm.js is most of it
    script = gzip.decompress(body).decode()
    assert 'customElements.define("jupybot-terminal"' in script
    assert "Copyright" in script  # xterm.js's license goes with it
    assert "sourceMappingURL" not in script  # no map is served
    assert headers["Access-Control-Allow-Origin"] == "*"  # a public script; the socket decides
    assert headers["Cache-Control"] == "no-cache"
    unchanged = urllib.request.Request(url, headers={"If-None-Match": headers["ETag"]})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(unchanged, timeout=30)
    assert answer.value.code == 304


def test_embed_js_says_so_when_xterm_js_is_not_installed(tmp_path: Path) -> None:
    (tmp_path / "embed.js").write_text("function defineJupybotTerminal() {}")
    request = DummyRequest([b""])
    body = EmbedScript(tmp_path).render(request)
    answer = (request.responseCode, json.loads(body))
    assert answer == (503, {"error": "embed.js is not built on this server"})


_STATE_FOR_PEOPLE = r"""() => [...document.querySelectorAll("jupybot-terminal")].map((el) => {
  if (!el.term) return "an element without a terminal";
  const buffer = el.term.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return `state ${el.state}: ${el.shadowRoot.querySelector(".status").textContent}\n`
    + lines.join("\n").trim();
}).join("\n\n")"""


# The browser's side (run as `python -m tests.terminal.test_embed LISTED FOREIGN SHOTS`).


def _drive(listed: str, foreign: str, shots: Path) -> dict[str, Any]:
    from playwright.sync_api import Page, sync_playwright

    from tests.terminal.browser import PAGE_ERRORS, WAIT_MS, WEBGL_ARGS, watched

    # The text on an element's screen (every renderer: the DOM one leaves text in the DOM,
    # WebGL does not), by the element's CSS selector and the page's.
    screen_of = """([which, pattern]) => {
      const el = document.querySelector(which);
      if (!el || !el.term) return pattern === null ? "" : false;
      const buffer = el.term.buffer.active, lines = [];
      for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
      const text = lines.join("\\n");
      return pattern === null ? text : new RegExp(pattern, "m").test(text);
    }"""

    def screen(page: Page, which: str = "jupybot-terminal") -> str:
        return str(page.evaluate(screen_of, [which, None]))

    def wait_screen(page: Page, pattern: str, which: str = "jupybot-terminal") -> str:
        page.wait_for_function(screen_of, arg=[which, pattern], timeout=WAIT_MS)
        return screen(page, which)

    def wait_state(page: Page, state: str, which: str = "jupybot-terminal") -> None:
        page.wait_for_function(
            "([which, state]) => document.querySelector(which).state === state",
            arg=[which, state],
            timeout=WAIT_MS,
        )

    def element(page: Page, expression: str, which: str = "jupybot-terminal") -> Any:
        return page.evaluate(
            f"(which) => {{ const el = document.querySelector(which); return {expression}; }}",
            which,
        )

    def send_contact(page: Page, message: str) -> tuple[list[int], str]:
        page.fill("#contact-form [name=name]", "Grace")
        page.fill("#contact-form [name=email]", "grace@example.org")
        page.fill("#contact-form [name=message]", message)
        page.click("#contact-form button")
        result = page.locator(".contact-result")
        result.filter(has_not_text="Sending").filter(has_text=re.compile(".")).wait_for(
            timeout=WAIT_MS
        )
        return page.evaluate("() => window.contactStatuses"), result.inner_text()

    # Every status the page's fetch calls get, for the test to read.
    record_statuses = """
      window.contactStatuses = [];
      const original = window.fetch;
      window.fetch = async (...args) => {
        const response = await original(...args);
        window.contactStatuses.push(response.status);
        return response;
      };
    """
    seen: dict[str, Any] = {}
    shots.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=WEBGL_ARGS
        )
        try:
            # The page from an origin jupybot does not list.
            page = watched(browser.new_context(viewport={"width": 900, "height": 900})).new_page()
            page.add_init_script(record_statuses)
            page.goto(foreign)
            wait_state(page, "ended")
            refused: dict[str, Any] = {
                "state": element(page, "el.state"),
                "notice": page.locator("jupybot-terminal .notice-text").inner_text(),
                "output": screen(page).split("──")[0].strip(),
            }
            page.screenshot(path=str(shots / "foreign-origin.png"), full_page=True)
            refused["contact_statuses"], refused["contact_result"] = send_contact(
                page, "Sent from a foreign page."
            )
            # A form post is a "simple" request: the browser sends it without asking first.
            refused["plain_post"] = page.evaluate(
                """(url) => fetch(url, {method: "POST", mode: "no-cors", body: new URLSearchParams(
                     {name: "Mallory", email: "m@example.org", message: "Plain post."})})
                   .then(response => response.type, error => String(error))""",
                page.evaluate("() => document.querySelector('script[src]').src").replace(
                    "embed.js", "contact"
                ),
            )
            seen["foreign"] = refused
            page.context.close()

            # The owner's site, listed in web.origins.
            context = watched(browser.new_context(viewport={"width": 900, "height": 900}))
            page = context.new_page()
            page.add_init_script(record_statuses)
            page.goto(listed)
            ok: dict[str, Any] = {}
            ok["first_screen"] = wait_screen(page, "What is your name\\? $")
            wait_state(page, "live")
            ok["globals"] = page.evaluate(
                "() => ({Terminal: typeof Terminal, JupybotWire: typeof JupybotWire})"
            )
            ok["title"] = page.locator("jupybot-terminal .title").inner_text()
            ok["rows"] = element(page, "el.term.rows")
            # Its styles apply (a page's CSP without style-src 'unsafe-inline' blocks them).
            ok["styled"] = element(
                page, "getComputedStyle(el.shadowRoot.querySelector('.notice')).position"
            )
            ok["background"] = element(
                page,
                "getComputedStyle(el.shadowRoot.querySelector('.xterm-viewport')).backgroundColor",
            )
            ok["status_before_click"] = page.locator("jupybot-terminal .status").inner_text()
            page.click("jupybot-terminal .terminal")
            ok["status_after_click"] = page.locator("jupybot-terminal .status").inner_text()
            page.keyboard.type("Ada\n")
            wait_screen(page, "^1\\. ")
            token = element(page, "el.resume")
            context.set_offline(True)
            page.evaluate(
                "() => document.querySelector('jupybot-terminal').ws.close(4000, 'test: lost')"
            )
            wait_state(page, "offline")
            ok["offline_notice"] = page.locator("jupybot-terminal .notice-text").inner_text()
            page.screenshot(path=str(shots / "offline.png"), full_page=True)
            context.set_offline(False)  # the element hears the browser is online and resumes
            wait_state(page, "live")
            ok["same_session_after_outage"] = element(page, "el.resume") == token
            page.keyboard.type("quit\n")
            ok["end_screen"] = wait_screen(page, "Program finished")
            wait_state(page, "finished")
            ok["end_state"] = element(page, "el.state")
            ok["end_notice"] = page.locator("jupybot-terminal .notice-text").inner_text()
            restart = page.locator("jupybot-terminal .notice-restart")
            ok["run_again_visible"] = restart.is_visible()
            page.screenshot(path=str(shots / "finished.png"), full_page=True)
            restart.click()
            ok["screen_after_run_again"] = wait_screen(page, "What is your name\\? $")
            wait_state(page, "live")
            ok["new_session_after_run_again"] = element(page, "el.resume") not in (None, token)
            ok["contact_statuses"], ok["contact_result"] = send_contact(
                page, "Loved the quiz (listed)."
            )
            page.screenshot(path=str(shots / "listed-origin.png"), full_page=True)

            # A second element, added by a script: an explicit server, a fixed width, a height.
            page.evaluate(
                """(server) => {
                  const el = document.createElement("jupybot-terminal");
                  el.id = "sized";
                  for (const [name, value] of Object.entries({program: "size", server, cols: "60",
                                                              height: "200"})) {
                    el.setAttribute(name, value);
                  }
                  document.body.append(el);
                }""",
                page.evaluate("() => document.querySelector('script[src]').src").removesuffix(
                    "/embed.js"
                ),
            )
            sized = wait_screen(page, r"^\d+ \d+$", "#sized")
            ok["sized"] = {
                "pty": sized.strip().splitlines()[0],
                "term": element(page, "`${el.term.rows} ${el.term.cols}`", "#sized"),
                "height": element(page, "el.getBoundingClientRect().height", "#sized"),
                "dark": element(
                    page,
                    "getComputedStyle(el.shadowRoot.querySelector('.xterm-viewport'))"
                    ".backgroundColor",
                    "#sized",
                ),
            }
            page.evaluate("() => document.getElementById('sized').setAttribute('theme', 'light')")
            ok["sized"]["light"] = element(
                page,
                "getComputedStyle(el.shadowRoot.querySelector('.xterm-viewport')).backgroundColor",
                "#sized",
            )
            page.screenshot(path=str(shots / "two-elements.png"), full_page=True)
            seen["listed"] = ok
        except Exception:
            # What the page showed when it went wrong, for the test's failure message.
            for number, open_page in enumerate(browser.contexts[-1].pages):
                open_page.screenshot(path=str(shots / f"failed-{number}.png"), full_page=True)
                print(open_page.evaluate(_STATE_FOR_PEOPLE), PAGE_ERRORS, file=sys.stderr)
            raise
        finally:
            browser.close()
    seen["page_errors"] = PAGE_ERRORS
    return seen


if __name__ == "__main__":
    print(json.dumps(_drive(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
