// <jupybot-terminal program="quiz">: one of jupybot's programs in a terminal on the owner's own
// site, speaking the raw protocol of docs/protocol.md. The entry of /embed.js: esbuild.config.js
// bundles it with xterm.js, three of its addons, its CSS and static/wire.js into one script
// that defines nothing global but the element. How to use it: docs/embed.md.
//
// Attributes: program (required); server (jupybot's address; default: where /embed.js came
// from); theme ("dark" or "light"); rows and cols (a fixed size; otherwise the terminal fits the
// element's width, and 24 rows or its height); height (a CSS length, or pixels).
import { Terminal } from "@xterm/xterm";
import xtermCss from "@xterm/xterm/css/xterm.css";
import { FitAddon } from "@xterm/addon-fit";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebLinksAddon } from "@xterm/addon-web-links";
// The protocol's client side, shared with jupybot's page: this element draws what it says.
import { RawConnection } from "./wire.js";

// The script's own address (jupybot's, by default), known only while it first runs.
const scriptUrl = document.currentScript ? document.currentScript.src : "";
if (!customElements.get("jupybot-terminal")) defineJupybotTerminal();  // not if included twice

function defineJupybotTerminal() {
  const encoder = new TextEncoder();
  const DEFAULT_ROWS = 24;
  const DEFAULT_SERVER = new URL(".", scriptUrl || location.href).href;
  const connected = new Set();  // the elements on the page, shadow roots included

  const THEMES = {
    dark: {
      background: "#000000", foreground: "#e6e6e6", cursor: "#e6e6e6", black: "#000000",
      selectionBackground: "#44475a",
    },
    // xterm.js's default colours are drawn for a dark background; these read on white.
    light: {
      background: "#ffffff", foreground: "#1f2328", cursor: "#1f2328",
      selectionBackground: "#b6d7ff", black: "#1f2328", red: "#c62828", green: "#2e7d32",
      yellow: "#8a6100", blue: "#1565c0", magenta: "#8e24aa", cyan: "#00838f", white: "#6e7781",
      brightBlack: "#57606a", brightRed: "#b71c1c", brightGreen: "#1b5e20",
      brightYellow: "#6d4c00", brightBlue: "#0d47a1", brightMagenta: "#6a1b9a",
      brightCyan: "#006064", brightWhite: "#8c959f",
    },
  };

  const STYLE = `
:host { display: block; }
:host([hidden]) { display: none; }
[hidden] { display: none !important; }
.frame { --bg: #000; --fg: #e6e6e6; --bar: #181a20; --border: #2f3340; --muted: #9aa3b2;
  --accent: #6ea8fe; --live: #4ade80; --warn: #fbbf24; --bad: #f87171;
  display: flex; flex-direction: column; box-sizing: border-box; height: 100%;
  border: 1px solid var(--border); border-radius: 8px; overflow: hidden;
  background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.frame:focus-within { border-color: var(--accent); }
.frame[data-theme="light"] { --bg: #fff; --fg: #1f2328; --bar: #f4f5f7; --border: #d0d7de;
  --muted: #57606a; --accent: #0969da; --live: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
.bar { display: flex; gap: 0.6em; align-items: center; padding: 0.35em 0.8em;
  background: var(--bar); border-bottom: 1px solid var(--border); min-width: 0; }
.state { width: 0.6em; height: 0.6em; border-radius: 50%; flex: none; background: var(--muted); }
.frame[data-state="live"] .state { background: var(--live); }
.frame[data-state="starting"] .state, .frame[data-state="reconnecting"] .state {
  background: var(--warn); }
.frame[data-state="offline"] .state, .frame[data-state="ended"] .state { background: var(--bad); }
.title { font-weight: 600; white-space: nowrap; }
.status { color: var(--muted); font-size: 0.9em; flex: 1; min-width: 0; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.screen { position: relative; flex: 1; min-height: 0; padding: 6px; background: var(--bg); }
.terminal { height: 100%; transition: filter 0.2s, opacity 0.2s; }
/* Not live: greyed, so it cannot pass for a working terminal. */
.frame[data-state="offline"] .terminal, .frame[data-state="reconnecting"] .terminal {
  filter: grayscale(1); opacity: 0.35; }
.frame[data-state="ended"] .terminal, .frame[data-state="finished"] .terminal { opacity: 0.75; }
.notice { position: absolute; left: 0.8em; right: 0.8em; bottom: 0.8em; margin-inline: auto;
  width: fit-content; display: flex; flex-wrap: wrap; gap: 0.6em; align-items: center;
  justify-content: center; padding: 0.5em 0.8em; border-radius: 6px; background: var(--bar);
  border: 1px solid var(--border); box-shadow: 0 0.4em 1.2em rgba(0, 0, 0, 0.35); }
.frame[data-state="offline"] .notice, .frame[data-state="ended"] .notice {
  border-color: var(--bad); }
button { font: inherit; font-size: 0.9em; padding: 0.25em 0.8em; border-radius: 5px;
  cursor: pointer; border: 1px solid var(--accent); background: var(--accent); color: var(--bg); }
button.secondary { background: transparent; color: var(--fg); border-color: var(--border); }
button:hover { filter: brightness(1.1); }
`;

  const TEMPLATE = `
<div class="frame" part="frame">
  <div class="bar" part="bar">
    <span class="state"></span><span class="title"></span>
    <span class="status" role="status"></span>
  </div>
  <div class="screen">
    <div class="terminal"></div>
    <div class="notice" role="alert" hidden>
      <span class="notice-text"></span>
      <button type="button" class="notice-action secondary"></button>
      <button type="button" class="notice-restart">Run again</button>
    </div>
  </div>
</div>`;

  function positive(text) {
    const number = Number(text);
    return Number.isInteger(number) && number > 0 ? number : null;
  }

  class JupybotTerminal extends HTMLElement {
    static get observedAttributes() { return ["theme"]; }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      const style = document.createElement("style");
      style.textContent = xtermCss + STYLE;
      root.innerHTML = TEMPLATE;
      root.prepend(style);
      const $ = (name) => root.querySelector(`.${name}`);
      this.parts = {
        frame: $("frame"), title: $("title"), status: $("status"), host: $("terminal"),
        notice: $("notice"), noticeText: $("notice-text"), noticeAction: $("notice-action"),
        noticeRestart: $("notice-restart"),
      };
      this.parts.noticeRestart.addEventListener("click", () => this.runAgain());
      // A click anywhere on it but a button (the bar, the padding) types into the terminal.
      this.parts.frame.addEventListener("click", (event) => {
        if (this.term && !event.target.closest("button")) this.term.focus();
      });
      this.term = null;
      this.connection = null;
    }

    get program() { return this.getAttribute("program") || ""; }

    // jupybot's address, always ending with "/" (it may sit under a path behind a proxy).
    get server() {
      const given = this.getAttribute("server");
      return given ? new URL(given.endsWith("/") ? given : `${given}/`, location.href).href
        : DEFAULT_SERVER;
    }

    // "live", "starting", "reconnecting", "offline", "finished" or "ended".
    get state() { return this.parts.frame.dataset.state || ""; }

    connectedCallback() {
      if (this.term) return;  // moved within the page: the session goes on
      this.disposed = false;
      this.applyTheme();
      const height = this.getAttribute("height");
      if (height) this.parts.frame.style.height = /^\d+$/.test(height) ? `${height}px` : height;
      this.fixedCols = positive(this.getAttribute("cols"));
      this.fixedRows = positive(this.getAttribute("rows")) || (height ? null : DEFAULT_ROWS);
      this.parts.title.textContent = this.program;
      this.openTerminal();
      connected.add(this);
      this.start();
    }

    disconnectedCallback() {
      // Removed from the page: the server ends the program once terminal.resume_seconds pass.
      queueMicrotask(() => { if (!this.isConnected) this.dispose(); });
    }

    attributeChangedCallback() {
      if (this.term) this.applyTheme();
    }

    applyTheme() {
      const theme = this.getAttribute("theme") === "light" ? "light" : "dark";
      this.parts.frame.dataset.theme = theme;
      if (this.term) this.term.options.theme = THEMES[theme];
    }

    openTerminal() {
      const theme = this.parts.frame.dataset.theme;
      this.term = new Terminal({
        cursorBlink: true, scrollback: 2000, allowProposedApi: true, theme: THEMES[theme],
        fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
        cols: this.fixedCols || 80, rows: this.fixedRows || DEFAULT_ROWS,
      });
      this.fit = new FitAddon();
      this.term.loadAddon(this.fit);
      this.term.loadAddon(new WebLinksAddon());
      this.term.loadAddon(new Unicode11Addon());
      this.term.unicode.activeVersion = "11";
      this.term.open(this.parts.host);
      this.term.textarea.addEventListener("focus", () => this.showStatus());
      this.term.textarea.addEventListener("blur", () => this.showStatus());
      this.fitSize();
      const input = (bytes) => { if (this.connection) this.connection.sendInput(bytes); };
      this.term.onData((data) => input(encoder.encode(data)));
      this.term.onBinary((data) => input(Uint8Array.from(data, (c) => c.charCodeAt(0))));
      this.term.onResize(({ cols, rows }) => {
        if (this.connection) this.connection.resize(cols, rows);
      });
      this.resizer = new ResizeObserver(() => {
        cancelAnimationFrame(this.fitFrame);
        this.fitFrame = requestAnimationFrame(() => { if (!this.disposed) this.fitSize(); });
      });
      this.resizer.observe(this.parts.host);
    }

    // The element's box decides what rows and cols do not fix.
    fitSize() {
      if (this.fixedCols && this.fixedRows) {
        this.term.resize(this.fixedCols, this.fixedRows);
        return;
      }
      const proposed = this.fit.proposeDimensions();
      if (!proposed || !proposed.cols || !proposed.rows) return;  // not laid out (yet)
      const cols = this.fixedCols || proposed.cols;
      const rows = this.fixedRows || proposed.rows;
      if (cols !== this.term.cols || rows !== this.term.rows) this.term.resize(cols, rows);
    }

    // A new session of the program.
    start() {
      this.everLive = false;
      if (this.connection) this.connection.dispose();
      const url = new URL("terminal/ws", this.server);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      this.connection = new RawConnection({ url: url.href, program: this.program, view: this });
      this.hideNotice();
      this.connection.connect();
    }

    runAgain() {
      if (!this.term) return;
      this.term.reset();  // a clean screen, the cursor back
      this.term.options.disableStdin = false;
      this.start();
      this.term.focus();
    }

    // What the connection knows, for a script of the owner's (and the tests).
    get ws() { return this.connection ? this.connection.ws : null; }
    get resume() { return this.connection ? this.connection.resume : null; }
    get finished() { return this.connection ? this.connection.finished : false; }

    // The connection's view (see RawConnection in static/wire.js).

    hello() {
      return { cols: this.term.cols, rows: this.term.rows };
    }

    write(bytes, drawn) {
      this.term.write(bytes, drawn);
    }

    ready(message) {
      if (message.title) this.parts.title.textContent = message.title;
      this.everLive = true;
      this.term.options.disableStdin = false;
      this.hideNotice();
    }

    fresh(line) {
      this.term.write(`\r\n\x1b[2m── ${line} ──\x1b[0m\r\n`);
    }

    // A browser tells a page nothing of why a websocket was refused (an origin not in
    // web.origins, a server down): say both.
    unreachable() {
      return this.everLive ? "The connection was lost."
        : "Could not start the program: the server cannot be reached or refuses this site.";
    }

    // The screen stays, greyed and taking no input, until the session is back.
    offline(text) {
      const restarting = this.connection.restarting;
      this.term.options.disableStdin = true;
      this.showState("offline", "offline");
      this.showNotice(text, {
        label: restarting ? "Try now" : "Reconnect now",
        run: () => this.connection.reconnectNow(),
      });
      this.parts.noticeRestart.hidden = restarting;  // trying again already runs it anew
    }

    // The program ended (or cannot go on): say so, keep its screen, offer to run it again.
    end(text, how) {
      this.term.options.disableStdin = true;
      const line = how === "finished" ? "Program finished" : text;
      this.term.write(`\r\n\x1b[2m── ${line} ──\x1b[0m\r\n\x1b[?25l`);  // and no cursor
      if (how === "finished") {
        this.showState("finished", text || "finished");
        this.showNotice(text ? `Program finished (${text}).` : "Program finished.", null);
      } else {
        this.showState("ended", "ended");
        this.showNotice(text, null);
      }
    }

    showState(state, text) {
      this.parts.frame.dataset.state = state;
      this.statusText = text;
      this.showStatus();
      this.dispatchEvent(new CustomEvent("jupybot-state", { detail: { state } }));
    }

    // xterm.js draws no cursor until the terminal was focused once, and an element on a page
    // is not focused on load (that would scroll to it): the bar says where to type instead.
    showStatus() {
      const waiting = this.state === "live" && this.term
        && this.parts.host.querySelector("textarea") !== this.shadowRoot.activeElement;
      this.parts.status.textContent = waiting ? `${this.statusText} · click to type`
        : this.statusText;
    }

    showNotice(text, action) {
      const { notice, noticeText, noticeAction, noticeRestart } = this.parts;
      noticeText.textContent = text;
      noticeAction.hidden = !action;
      noticeAction.onclick = action ? action.run : null;
      if (action) noticeAction.textContent = action.label;
      noticeRestart.hidden = false;
      notice.hidden = false;
    }

    hideNotice() {
      this.parts.notice.hidden = true;
    }

    dispose() {
      this.disposed = true;
      connected.delete(this);
      cancelAnimationFrame(this.fitFrame);
      if (this.resizer) this.resizer.disconnect();
      if (this.connection) this.connection.dispose();
      this.connection = null;
      if (this.term) this.term.dispose();
      this.term = null;
    }
  }

  // A visitor whose network comes back resumes at once rather than at the next try.
  window.addEventListener("online", () => {
    for (const element of connected) {
      if (element.state === "offline") element.connection.reconnectNow();
    }
  });

  customElements.define("jupybot-terminal", JupybotTerminal);
}
