"""Drive the terminal page in real headless Chromium (run by test_page.py as a subprocess, so
Playwright's own event loop stays out of the test process's asyncio reactor).

    python -m tests.terminal.browser http://127.0.0.1:PORT/

Prints one JSON object of what the page showed.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

from playwright.sync_api import sync_playwright


def main(url: str) -> None:
    seen: dict[str, object] = {}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(url)
        seen["programs"] = page.locator("button.program .title").all_inner_texts()
        page.click("button[data-program=py]")
        rows = page.locator(".xterm-rows")
        rows.filter(has_text=">>>").wait_for(timeout=20000)
        page.keyboard.type("import os; print('size', os.get_terminal_size().columns)\n")
        rows.filter(has_text=re.compile(r"size\s\d+")).wait_for(timeout=20000)
        seen["columns_before"] = _last_size(rows.inner_text())
        page.set_viewport_size({"width": 600, "height": 500})
        page.keyboard.type("print('size', os.get_terminal_size().columns, 6 * 7)\n")
        rows.filter(has_text=re.compile(r"size\s\d+\s42")).wait_for(timeout=20000)
        seen["columns_after"] = _last_size(rows.inner_text())
        seen["list_hidden"] = page.locator("#programs").is_hidden()
        page.keyboard.type("exit(5)\n")
        page.locator("#status", has_text="exited with status 5").wait_for(timeout=20000)
        seen["status"] = page.inner_text("#status")
        seen["run_again_shown"] = page.locator("#restart").is_visible()
        browser.close()
    print(json.dumps(seen))


def _last_size(text: str) -> int:
    # xterm.js draws spaces as no-break spaces (\s matches them).
    return int(re.findall(r"^size\s(\d+)", text, re.MULTILINE)[-1])


if __name__ == "__main__":
    main(sys.argv[1])
