"""Drive the terminal page in real headless Chromium (run by the page tests as a subprocess, so
Playwright's own event loop stays out of the test process's asyncio reactor).

    python -m tests.terminal.browser SCENARIO http://127.0.0.1:PORT/ SCREENSHOT_DIR

Prints one JSON object of what the page showed; screenshots go to SCREENSHOT_DIR.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

WAIT_MS = 20000
# Chromium draws WebGL in software here (SwiftShader): what a server without a GPU has.
WEBGL_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]

Seen = dict[str, Any]


# Uncaught errors of the page's scripts, in every scenario: each one fails the test.
PAGE_ERRORS: list[str] = []


def watched(context: BrowserContext) -> BrowserContext:
    context.on("weberror", lambda error: PAGE_ERRORS.append(str(error.error)))
    return context


def new_page(browser: Browser, width: int, height: int) -> Page:
    return watched(browser.new_context(viewport={"width": width, "height": height})).new_page()


def screen_text(page: Page) -> str:
    """What the terminal shows, whichever renderer draws it (WebGL leaves no text in the DOM)."""
    return str(
        page.evaluate(
            """() => {
              const s = window.jupybotSession;
              if (!s) return "";
              const buffer = s.term.buffer.active, lines = [];
              for (let i = 0; i < buffer.length; i++) {
                lines.push(buffer.getLine(i).translateToString(true));
              }
              return lines.join("\\n");
            }"""
        )
    )


def wait_screen(page: Page, pattern: str, timeout_ms: int = WAIT_MS) -> str:
    """Wait until the terminal shows C{pattern} (a regular expression); returns the screen."""
    page.wait_for_function(
        """(pattern) => {
          const s = window.jupybotSession;
          if (!s) return false;
          const buffer = s.term.buffer.active, lines = [];
          for (let i = 0; i < buffer.length; i++) {
            lines.push(buffer.getLine(i).translateToString(true));
          }
          return new RegExp(pattern, "m").test(lines.join("\\n"));
        }""",
        arg=pattern,
        timeout=timeout_ms,
    )
    return screen_text(page)


def wait_live(page: Page) -> None:
    page.locator('#state[data-state="live"]').wait_for(state="attached", timeout=WAIT_MS)


def resume_token(page: Page) -> str | None:
    token = page.evaluate("() => window.jupybotSession && window.jupybotSession.resume")
    return str(token) if token else None


def scenario_walk(browser: Browser, url: str, shots: Path) -> Seen:
    """The list, a program, a resize that reaches the PTY, the end line and Run again."""
    seen: Seen = {}
    page = new_page(browser, 1000, 700)
    page.goto(url)
    seen["heading"] = page.inner_text("h1")
    seen["programs"] = page.locator("a.program .title").all_inner_texts()
    heights = page.locator("a.program").evaluate_all("cards => cards.map(c => c.offsetHeight)")
    seen["card_heights"] = heights
    seen["favicon"] = page.evaluate(
        "() => fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)"
    )
    page.screenshot(path=str(shots / "list.png"))
    page.click("a.program[data-program=py]")
    seen["url"] = page.url
    wait_screen(page, ">>> $")
    seen["renderer"] = page.get_attribute("#terminal", "data-renderer")
    page.keyboard.type("import os; print('size', os.get_terminal_size().columns)\n")
    seen["columns_before"] = _last_size(wait_screen(page, r"^size \d+"))
    page.set_viewport_size({"width": 600, "height": 500})
    page.keyboard.type("print('size', os.get_terminal_size().columns, 6 * 7)\n")
    seen["columns_after"] = _last_size(wait_screen(page, r"^size \d+ 42"))
    seen["list_hidden"] = page.locator("#programs").is_hidden()
    page.set_viewport_size({"width": 1000, "height": 700})
    page.keyboard.type("print('see https://example.org/docs for more')\n")
    wait_screen(page, r"^see https")
    seen["link_opened"] = _click_link(page, "https://example.org/docs")
    page.keyboard.type("exit(5)\n")
    page.locator("#notice", has_text="Program finished").wait_for(timeout=WAIT_MS)
    seen["notice"] = page.inner_text("#notice-text")
    seen["end_line"] = "── Program finished ──" in screen_text(page)
    seen["status"] = page.inner_text("#status")
    page.screenshot(path=str(shots / "finished.png"))
    page.click("#notice-restart")
    wait_live(page)
    wait_screen(page, ">>> $")
    page.keyboard.type("print('fresh', 'os' in dir())\n")  # imported before the exit
    screen = wait_screen(page, "^fresh")
    seen["fresh_after_run_again"] = bool(re.search(r"^fresh False", screen, re.MULTILINE))
    return seen


def _click_link(page: Page, url: str) -> str | None:
    """Click the first cell of C{url} on the screen; returns the address of the tab it opened."""
    position = page.evaluate(
        """(url) => {
          const s = window.jupybotSession, buffer = s.term.buffer.active;
          for (let y = buffer.length - 1; y >= 0; y--) {
            const x = buffer.getLine(y).translateToString(true).indexOf(url);
            if (x >= 0) {
              const screen = s.term.element.querySelector(".xterm-screen").getBoundingClientRect();
              const w = screen.width / s.term.cols, h = screen.height / s.term.rows;
              return {x: screen.left + (x + 2.5) * w, y: screen.top + (y - buffer.viewportY + 0.5) * h};
            }
          }
          return null;
        }""",
        url,
    )
    if position is None:
        return None
    page.context.route(
        url + "**",
        lambda route: route.fulfill(body="<title>linked</title>", content_type="text/html"),
    )
    page.mouse.move(position["x"], position["y"])
    with page.context.expect_page(timeout=WAIT_MS) as popup:
        page.mouse.click(position["x"], position["y"])
    opened = popup.value
    opened.wait_for_url(url, timeout=WAIT_MS)
    address = opened.url
    no_way_back = opened.evaluate("() => window.opener === null")
    opened.close()
    return address if no_way_back else None


def scenario_reload(browser: Browser, url: str, shots: Path) -> Seen:
    """Reload, Back and Forward return to the same running program with its screen."""
    seen: Seen = {}
    page = new_page(browser, 1000, 700)
    page.goto(url)
    page.click("a.program[data-program=py]")
    wait_screen(page, ">>> $")
    token = resume_token(page)
    page.keyboard.type("x = 6 * 7; print('before the reload')\n")
    wait_screen(page, "^before the reload")
    page.reload()
    wait_live(page)
    seen["url_after_reload"] = page.url
    seen["same_session_after_reload"] = resume_token(page) == token
    seen["screen_kept"] = "before the reload" in screen_text(page)
    page.keyboard.type("print('x is', x)\n")
    seen["x_after_reload"] = "x is 42" in wait_screen(page, "^x is")
    page.screenshot(path=str(shots / "after-reload.png"))
    page.go_back()  # to the list
    page.locator("#programs").wait_for(state="visible", timeout=WAIT_MS)
    seen["list_after_back"] = page.locator("#programs").is_visible()
    page.go_forward()  # to the program again
    wait_live(page)
    seen["same_session_after_forward"] = resume_token(page) == token
    page.keyboard.type("print('x + 1 is', x + 1)\n")
    seen["x_after_forward"] = "x + 1 is 43" in wait_screen(page, "^x \\+ 1 is")
    page.click("#back")
    page.locator("#programs").wait_for(state="visible", timeout=WAIT_MS)
    page.click("a.program[data-program=py]")
    wait_live(page)
    seen["same_session_from_the_list"] = resume_token(page) == token
    return seen


def scenario_stale(browser: Browser, url: str, shots: Path) -> Seen:
    """A tab whose session ended while it was away (or a restarted server) keeps the old
    screen to read and starts the program afresh below it."""
    seen: Seen = {}
    page = new_page(browser, 1000, 700)
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    page.keyboard.type("z = 1; print('old', 'session')\n")
    wait_screen(page, "^old session")
    old = resume_token(page)
    page.evaluate(
        """() => {
          const key = "jupybot.session.py";
          addEventListener("pagehide", () => {  // after the page's own save
            const state = JSON.parse(sessionStorage.getItem(key));
            sessionStorage.setItem(key, JSON.stringify({...state, resume: "gone"}));
          });
        }"""
    )
    page.reload()
    screen = wait_screen(page, "here is a new one[\\s\\S]*>>> $")
    wait_live(page)
    seen["old_screen_kept"] = "old session" in screen
    seen["new_session"] = resume_token(page) not in (None, old, "gone")
    page.keyboard.type("print('z' in dir())\n")
    seen["fresh"] = bool(wait_screen(page, "^False$"))
    page.screenshot(path=str(shots / "stale.png"))
    return seen


def scenario_fullscreen(browser: Browser, url: str, shots: Path) -> Seen:
    """A full-screen (curses) program comes back from a reload as it was, and goes on."""
    seen: Seen = {}
    page = new_page(browser, 900, 500)
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    page.keyboard.type(
        "import curses; key = curses.wrapper("
        "lambda s: (s.addstr(2, 4, 'full screen'), s.refresh(), s.getch())[2])\n"
    )
    wait_screen(page, "^    full screen")
    page.reload()
    wait_live(page)
    seen["buffer"] = page.evaluate("() => window.jupybotSession.term.buffer.active.type")
    seen["drawn_again"] = "    full screen" in screen_text(page)
    page.screenshot(path=str(shots / "fullscreen-after-reload.png"))
    page.keyboard.type("q")
    wait_screen(page, ">>> $")
    page.keyboard.type("print('key', key)\n")
    seen["key_reached_it"] = bool(wait_screen(page, "^key 113$"))
    return seen


def scenario_restart(browser: Browser, url: str, shots: Path) -> Seen:
    """The server restarts under a running program (the test stops and starts it when this
    prints a line and reads one back): the page says so, greyed, and starts the program again
    once the server is back."""
    seen: Seen = {}
    page = new_page(browser, 900, 500)
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    page.keyboard.type("print('before the restart')\n")
    wait_screen(page, "^before the restart")
    old = resume_token(page)
    _ask("stop the server")
    page.locator('#state[data-state="offline"]').wait_for(state="attached", timeout=WAIT_MS)
    seen["notice"] = page.inner_text("#notice-text")
    seen["greyed"] = bool(
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('terminal')).opacity < 0.5",
            timeout=WAIT_MS,
        )
    )
    page.screenshot(path=str(shots / "server-down.png"))
    _ask("start the server")
    screen = wait_screen(page, "restarting; this program ended[\\s\\S]*>>> $", 60000)
    wait_live(page)
    seen["old_screen_kept"] = "before the restart" in screen
    seen["new_session"] = resume_token(page) not in (None, old)
    seen["notice_hidden"] = page.locator("#notice").is_hidden()
    page.screenshot(path=str(shots / "server-back.png"))
    return seen


def _ask(what: str) -> None:
    """Ask the test driving this scenario to do something, and wait until it is done."""
    print(what, flush=True)
    sys.stdin.readline()


def scenario_idle(browser: Browser, url: str, shots: Path) -> Seen:
    """A session closed for idleness says why and offers Run again; it does not look live."""
    seen: Seen = {}
    page = new_page(browser, 900, 500)
    page.goto(url + "#sleepy")
    page.locator("#notice", has_text="idle").wait_for(timeout=WAIT_MS)
    seen["notice"] = page.inner_text("#notice-text")
    seen["state"] = page.get_attribute("#state", "data-state")
    seen["run_again"] = page.locator("#notice-restart").is_visible()
    seen["takes_keys"] = not page.evaluate("() => window.jupybotSession.term.options.disableStdin")
    page.screenshot(path=str(shots / "idle.png"))
    return seen


def scenario_paste(browser: Browser, url: str, shots: Path) -> Seen:
    """A 1 MB paste reaches the program whole (it reads it in raw mode and prints a digest)."""
    seen: Seen = {}
    page = new_page(browser, 1000, 700)
    page.goto(url + "#digest")
    wait_screen(page, "^ready")
    size = 1024 * 1024
    text = "".join(chr(ord("a") + (i * 7 + i // 26) % 26) for i in range(size))
    seen["sent_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    seen["frames_at_once"] = page.evaluate(
        """(text) => {
          const frames = window.sentFrames = [];
          const ws = window.jupybotSession.ws, send = ws.send.bind(ws);
          ws.send = (data) => {
            if (data[0] === 0x00) frames.push(data.length);  // INPUT frames
            send(data);
          };
          const area = document.querySelector(".xterm-helper-textarea");
          const data = new DataTransfer();
          data.setData("text/plain", text);
          area.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                                           cancelable: true}));
          return frames;  // those sent at once; the rest go as the socket drains
        }""",
        text,
    )
    screen = wait_screen(page, r"^got \d+ [0-9a-f]{64}", timeout_ms=60000)
    seen["frames"] = page.evaluate("() => window.sentFrames")
    got = re.findall(r"^got (\d+) ([0-9a-f]{64})", screen, re.MULTILINE)[-1]
    seen["received_bytes"], seen["received_sha256"] = int(got[0]), got[1]
    page.locator("#notice", has_text="Program finished").wait_for(timeout=WAIT_MS)
    page.screenshot(path=str(shots / "paste.png"))
    return seen


def scenario_silent(browser: Browser, url: str, shots: Path) -> Seen:
    """bc prints nothing at start: the page says it waits for input, until the visitor types."""
    seen: Seen = {}
    page = new_page(browser, 1000, 700)
    page.goto(url + "#bc")
    page.locator("#hint").wait_for(state="visible", timeout=WAIT_MS)
    seen["hint"] = page.inner_text("#hint")
    page.screenshot(path=str(shots / "silent-hint.png"))
    page.keyboard.type("2^100\n")
    seen["answer"] = "1267650600228229401496703205376" in wait_screen(page, "^12676")
    seen["hint_hidden_after_typing"] = page.locator("#hint").is_hidden()
    return seen


def scenario_outage(browser: Browser, url: str, shots: Path) -> Seen:
    """A lost connection greys the screen and says so; back online, the same session goes on."""
    seen: Seen = {}
    context = watched(browser.new_context(viewport={"width": 1000, "height": 700}))
    page = context.new_page()
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    token = resume_token(page)
    page.keyboard.type("y = 'still here'\n")
    wait_screen(page, "still here'\n>>> $")
    context.set_offline(True)
    page.evaluate("() => window.jupybotSession.ws.close(4000, 'test: connection lost')")
    page.locator('#state[data-state="offline"]').wait_for(state="attached", timeout=WAIT_MS)
    seen["notice"] = page.inner_text("#notice-text")
    # Greyed out (after a short transition), so it cannot pass for a live terminal.
    seen["greyed"] = bool(
        page.wait_for_function(
            "() => getComputedStyle(document.getElementById('terminal')).opacity < 0.5",
            timeout=WAIT_MS,
        )
    )
    page.screenshot(path=str(shots / "offline.png"))
    context.set_offline(False)  # the page hears the browser is online and resumes at once
    wait_live(page)
    seen["same_session"] = resume_token(page) == token
    page.keyboard.type("print(y)\n")
    seen["state_kept"] = "still here" in wait_screen(page, "^still here")
    seen["notice_hidden"] = page.locator("#notice").is_hidden()
    return seen


def scenario_clipboard(browser: Browser, url: str, shots: Path) -> Seen:
    """Ctrl+Shift+C copies the selection; Ctrl+Shift+V pastes; CJK and emoji are drawn."""
    seen: Seen = {}
    context = watched(browser.new_context(viewport={"width": 1000, "height": 700}))
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    page = context.new_page()
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    page.keyboard.type("print('copy' + 'me', '你好世界', '🎉🐍')\n")
    wait_screen(page, "^copyme")
    page.evaluate(
        """() => {
          const s = window.jupybotSession, buffer = s.term.buffer.active;
          for (let y = buffer.length - 1; y >= 0; y--) {
            if (buffer.getLine(y).translateToString(true).startsWith("copyme")) {
              s.term.select(0, y, 6);
              return;
            }
          }
        }"""
    )
    page.keyboard.press("Control+Shift+C")
    seen["copied"] = page.evaluate("() => navigator.clipboard.readText()")
    page.evaluate("() => navigator.clipboard.writeText('print(6 * 9)')")
    page.keyboard.press("Control+Shift+V")
    wait_screen(page, r"^>>> print\(6 \* 9\)")  # the clipboard is read asynchronously
    page.keyboard.press("Enter")
    seen["pasted_ran"] = "54" in wait_screen(page, "^54$")
    # On plain http a page may not read the clipboard: the browser's own paste runs instead.
    page.evaluate("() => navigator.clipboard.writeText('print(7 * 8)')")
    page.evaluate("() => Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.keyboard.press("Control+Shift+V")
    wait_screen(page, r"^>>> print\(7 \* 8\)")
    page.keyboard.press("Enter")
    seen["native_paste_ran"] = "56" in wait_screen(page, "^56$")
    page.screenshot(path=str(shots / "cjk-emoji.png"))
    return seen


def scenario_touch(browser: Browser, url: str, shots: Path) -> Seen:
    """A phone held sideways: the terminal fits, and the key bar sends Ctrl-C and arrows."""
    seen: Seen = {}
    context = watched(
        browser.new_context(viewport={"width": 844, "height": 390}, has_touch=True, is_mobile=True)
    )
    page = context.new_page()
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    seen["keys_visible"] = page.locator("#keys").is_visible()
    seen["fits"] = page.evaluate(
        "() => document.documentElement.scrollHeight <= window.innerHeight + 1"
    )
    seen["rows"] = page.evaluate("() => window.jupybotSession.term.rows")
    page.keyboard.type("import time; time.sleep(60)\n")
    page.tap('#keys [data-key="ctrl-c"]')
    seen["ctrl_c"] = "KeyboardInterrupt" in wait_screen(page, "KeyboardInterrupt")
    page.tap('#keys [data-key="ctrl"]')
    seen["ctrl_armed"] = page.get_attribute('#keys [data-key="ctrl"]', "aria-pressed")
    page.keyboard.type("l")  # Ctrl then l: clear the screen
    page.keyboard.type("print('after', 'clear')\n")
    wait_screen(page, "^after clear")
    page.tap('#keys [data-key="up"]')
    page.keyboard.press("Enter")
    seen["history_by_arrow"] = bool(wait_screen(page, r"^after clear$[\s\S]*^after clear$"))
    seen["cleared"] = "sleep" not in screen_text(page)
    page.screenshot(path=str(shots / "landscape-phone.png"))
    return seen


def scenario_no_webgl(browser: Browser, url: str, shots: Path) -> Seen:
    """Without WebGL the page draws with the DOM renderer and still works."""
    seen: Seen = {}
    page = new_page(browser, 800, 500)
    page.goto(url + "#py")
    wait_screen(page, ">>> $")
    seen["renderer"] = page.get_attribute("#terminal", "data-renderer")
    page.keyboard.type("print(6 * 7)\n")
    seen["works"] = "42" in wait_screen(page, "^42$")
    page.screenshot(path=str(shots / "dom-renderer.png"))
    return seen


# Pixels this much brighter than the terminal's black background in a channel are drawn.
LIT = 64


def scenario_phones(browser: Browser, url: str, shots: Path) -> Seen:
    """A phone at device pixel ratio 1, 2 and 3, held upright then turned sideways: the
    terminal draws its text (read from a screenshot, cell by cell), its rows and columns fit
    the screen and are the program's, and an emoji with a skin tone takes 2 cells."""
    seen: Seen = {}
    for ratio in (1, 2, 3):
        context = watched(
            browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=ratio,
                is_mobile=True,
                has_touch=True,
            )
        )
        page = context.new_page()
        page.goto(url + "#py")
        wait_screen(page, ">>> $")
        # Typed as escapes: the emoji reaches the screen only through the program's output.
        page.keyboard.type("print('thumbs', '[\\U0001F44D\\U0001F3FD]', 'up')\n")
        wait_screen(page, r"^thumbs \[")
        portrait = _phone_screen(page, "thumbs", shots / f"portrait-{ratio}x.png")
        page.set_viewport_size({"width": 844, "height": 390})  # turned sideways
        page.wait_for_function(
            "(cols) => window.jupybotSession.term.cols > cols", arg=portrait["cols"]
        )
        landscape = _phone_screen(page, "size", shots / f"landscape-{ratio}x.png")
        seen[f"{ratio}x"] = {"portrait": portrait, "landscape": landscape}
        context.close()
    return seen


def _phone_screen(page: Page, word: str, shot: Path) -> Seen:
    """What the terminal shows now: its size as the program sees it, how it fits, which
    renderer draws, whether the cells of the last line starting with C{word} are drawn and
    blank cells are not, and the cells of the last emoji with a skin tone."""
    # Tagged: an earlier answer with the prompt after it matches until this one is echoed.
    tag = shot.stem
    page.keyboard.type(f"import os; print('size', *os.get_terminal_size(), '{tag}')\n")
    screen = wait_screen(page, rf"^size \d+ \d+ {tag}\n>>> $")
    cols, rows = (int(n) for n in re.findall(rf"^size (\d+) (\d+) {tag}$", screen, re.M)[-1])
    page.wait_for_function(
        """() => {
          const host = document.getElementById("terminal"), s = window.jupybotSession;
          return host.dataset.renderer === "dom" || !s.webglCheck || !s.webglCheck.pending;
        }""",
        timeout=WAIT_MS,
    )
    seen: Seen = page.evaluate(
        """(word) => {
          const s = window.jupybotSession, term = s.term, buffer = term.buffer.active;
          const host = document.getElementById("terminal");
          const box = host.getBoundingClientRect(), style = getComputedStyle(host);
          const screen = term.element.querySelector(".xterm-screen").getBoundingClientRect();
          const lines = [];
          for (let y = 0; y < term.rows; y++) {
            lines.push(buffer.getLine(buffer.viewportY + y).translateToString(true));
          }
          const row = lines.map((l) => l.startsWith(word)).lastIndexOf(true);
          let emoji = null;
          for (let y = buffer.length - 1; y >= 0 && !emoji; y--) {
            const line = buffer.getLine(y);
            for (let x = 0; x < term.cols - 3; x++) {
              if (line.getCell(x).getChars() === "[" && line.getCell(x + 1).getCode() > 0x7f) {
                const cells = [];
                for (let i = x + 1; i < term.cols; i++) {
                  const cell = line.getCell(i);
                  if (cell.getChars() === "]") break;
                  cells.push([cell.getChars(), cell.getWidth()]);
                }
                emoji = cells;
                break;
              }
            }
          }
          return {
            cols: term.cols, rows: term.rows, ratio: devicePixelRatio,
            renderer: host.dataset.renderer, webgl_problem: host.dataset.webglProblem || null,
            viewport: [innerWidth, innerHeight],
            screen: [screen.left, screen.top, screen.right, screen.bottom],
            box: [box.left, box.top, box.right, box.bottom],
            page_height: document.documentElement.scrollHeight,
            keys_bottom: document.getElementById("keys").getBoundingClientRect().bottom,
            room: [box.width - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
                   box.height - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)],
            cell: [screen.width / term.cols, screen.height / term.rows],
            // The room a scrollbar takes (none where it overlays the text, as on phones).
            scrollbar: (() => {
              const viewport = term.element.querySelector(".xterm-viewport");
              return viewport.offsetWidth - viewport.clientWidth;
            })(),
            row, text: lines[row], emoji, cursor_row: buffer.cursorY,
          };
        }""",
        word,
    )
    seen["pty"] = [cols, rows]
    png = page.locator("#terminal .xterm-screen").screenshot(path=str(shot))
    seen.update(_drawn_cells(png, seen))
    return seen


def _drawn_cells(png: bytes, seen: Seen) -> Seen:
    """Of the screenshot of the terminal's screen: how many characters of the line C{row} show
    something, and how many cells of the blank rows below the cursor show anything."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    cell_w, cell_h = width / seen["cols"], height / seen["rows"]
    data = image.tobytes()  # RGB, a row after another

    def drawn(x: int, y: int) -> bool:
        for py in range(int(y * cell_h), int((y + 1) * cell_h)):
            row = data[
                py * width * 3 + int(x * cell_w) * 3 : py * width * 3 + int((x + 1) * cell_w) * 3
            ]
            if max(row, default=0) > LIT:
                return True
        return False

    row, text = seen["row"], seen["text"]
    characters = [x for x, c in enumerate(text) if c.strip() and ord(c) < 0x1100]
    blank_rows = range(seen["cursor_row"] + 1, seen["rows"])  # below the prompt
    return {
        "characters": len(characters),
        "characters_drawn": sum(drawn(x, row) for x in characters),
        "blank_cells": len(blank_rows) * seen["cols"],
        "blank_cells_drawn": sum(drawn(x, y) for y in blank_rows for x in range(seen["cols"])),
    }


SCENARIOS: dict[str, Callable[[Browser, str, Path], Seen]] = {
    "walk": scenario_walk,
    "reload": scenario_reload,
    "stale": scenario_stale,
    "fullscreen": scenario_fullscreen,
    "restart": scenario_restart,
    "idle": scenario_idle,
    "paste": scenario_paste,
    "silent": scenario_silent,
    "outage": scenario_outage,
    "clipboard": scenario_clipboard,
    "touch": scenario_touch,
    "no-webgl": scenario_no_webgl,
    "phones": scenario_phones,
}


def main(scenario: str, url: str, shots: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    args = ["--no-sandbox", "--disable-webgl"] if scenario == "no-webgl" else WEBGL_ARGS
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            seen = SCENARIOS[scenario](browser, url, shots)
        finally:
            browser.close()
    seen["page_errors"] = PAGE_ERRORS
    print(json.dumps(seen))


def _last_size(text: str) -> int:
    return int(re.findall(r"^size (\d+)", text, re.MULTILINE)[-1])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
