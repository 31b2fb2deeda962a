// jupybot's terminal page: the raw protocol of docs/protocol.md over one websocket per session.
//
// Each program has its own URL (/#name). A session's resume token, the screen as drawn and the
// count of output bytes drawn are kept in sessionStorage, so a reload or the browser's Back and
// Forward return to the same running program: the screen is restored from storage and the
// server sends what was printed after it.
//
// An ES module: esbuild.config.js bundles it, xterm.js and its addons into static/vendor/page.js,
// the one script the page loads.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { SerializeAddon } from "@xterm/addon-serialize";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { UnicodeGraphemesAddon } from "@xterm/addon-unicode-graphemes";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";
// The protocol's client side (frames, hello, resume, acknowledgements, refusals):
// static/wire.js, shared with the element of /embed.js. This file draws what it says.
import { RawConnection } from "./wire.js";

// A program that prints nothing this long after it started gets a hint that it waits for input.
const SILENT_HINT_MS = 1500;
const STORE_PREFIX = "jupybot.session.";
// The serialized screen kept for a reload: enough scrollback to scroll up a little, small
// enough for sessionStorage (a few MB per origin).
const SAVED_SCROLLBACK = 1000;
const encoder = new TextEncoder();

const $ = (id) => document.getElementById(id);
const list = $("programs");
const header = $("top");
const view = $("session");
const titleEl = $("title");
const stateEl = $("state");
const statusEl = $("status");
const hintEl = $("hint");
const screenEl = $("screen");
const noticeEl = $("notice");
const noticeText = $("notice-text");
const noticeAction = $("notice-action");
const noticeRestart = $("notice-restart");
const keysEl = $("keys");

// The largest frame the server takes (terminal.max_frame_kb).
const maxFrameBytes = (Number(document.body.dataset.maxFrameKb) || 64) * 1024;
let current = null;
// Why WebGL drew wrong on this page, once it did (the next sessions draw with the DOM).
let webglFailed = null;

const touch = window.matchMedia("(pointer: coarse)").matches || navigator.maxTouchPoints > 0;
document.body.classList.toggle("touch", touch);

function programTitle(program) {
  const card = list.querySelector(`[data-program="${CSS.escape(program)}"] .title`);
  return card ? card.textContent : program;
}

const saved = {
  load(program) {
    try { return JSON.parse(sessionStorage.getItem(STORE_PREFIX + program)); } catch { return null; }
  },
  store(program, state) {
    try {
      sessionStorage.setItem(STORE_PREFIX + program, JSON.stringify(state));
    } catch {
      // Too large for storage: keep the token; the server replays what it still has.
      try {
        sessionStorage.setItem(STORE_PREFIX + program, JSON.stringify({ ...state, screen: null }));
      } catch { /* storage unavailable: a reload starts afresh */ }
    }
  },
  forget(program) {
    try { sessionStorage.removeItem(STORE_PREFIX + program); } catch { /* nothing kept */ }
  },
};

class Session {
  constructor(program, title, resumeFrom) {
    this.program = program;
    this.sawOutput = Boolean(resumeFrom);
    this.ctrlArmed = false;
    this.term = new Terminal({
      cursorBlink: true, scrollback: 5000, allowProposedApi: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, "Noto Sans Mono CJK SC", '
        + '"Noto Color Emoji", monospace',
      // ANSI black as black: curses paints its background with it.
      theme: { background: "#000000", black: "#000000" },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.serializer = new SerializeAddon();
    this.term.loadAddon(this.serializer);
    // Addresses in the output open in a new tab (with no way back to this page).
    this.term.loadAddon(new WebLinksAddon());
    useUnicodeWidths(this.term);
    const host = $("terminal");
    host.replaceChildren();
    this.term.open(host);
    host.dataset.renderer = this.loadWebgl() ? "webgl" : "dom";
    this.fitToRoom();
    titleEl.textContent = title;
    if (resumeFrom && resumeFrom.screen) this.term.write(resumeFrom.screen);
    this.term.onData((data) => this.type(data));
    this.term.onBinary((data) => this.sendInput(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    this.term.onResize(({ cols, rows }) => {
      if (this.connection) this.connection.resize(cols, rows);  // not before it exists
    });
    this.term.attachCustomKeyEventHandler((event) => this.key(event));
    this.term.element.addEventListener("mouseup", () => {
      if (this.term.hasSelection()) copy(this.term.getSelection());
    });
    // Fit whenever the terminal's box changes: the window, the hint, the key bar, a rotation.
    this.resizer = new ResizeObserver(() => {
      cancelAnimationFrame(this.fitFrame);
      this.fitFrame = requestAnimationFrame(() => { if (!this.disposed) this.fitToRoom(); });
    });
    this.resizer.observe(host);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.connection = new RawConnection({
      url: `${scheme}://${location.host}/terminal/ws`, program, resumeFrom, maxFrameBytes,
      view: this,
    });
    this.connect();
    this.term.focus();
  }

  // As many rows and columns as the room holds. xterm.js's fit keeps 15 px for a scrollbar
  // even where scrollbars overlay the content and take no room (phones): two columns of 38
  // at 390 px. There the columns are counted over the whole width.
  fitToRoom() {
    const proposed = this.fit.proposeDimensions();
    if (!proposed || !proposed.cols || !proposed.rows) return;  // not laid out (yet)
    let { cols } = proposed;
    const viewport = this.term.element.querySelector(".xterm-viewport");
    const screen = this.term.element.querySelector(".xterm-screen");
    if (viewport && screen && viewport.offsetWidth === viewport.clientWidth) {
      const cellWidth = screen.getBoundingClientRect().width / this.term.cols;
      const room = parseFloat(getComputedStyle(this.term.element.parentElement).width);
      if (cellWidth > 0 && room > 0) cols = Math.max(cols, Math.floor(room / cellWidth));
    }
    if (cols !== this.term.cols || proposed.rows !== this.term.rows) {
      this.term.resize(cols, proposed.rows);
    }
  }

  // What the connection knows, for the page (and a developer's console, and the page's tests).
  get ws() { return this.connection.ws; }
  get resume() { return this.connection.resume; }
  get drawn() { return this.connection.drawn; }
  get finished() { return this.connection.finished; }
  get restarting() { return this.connection.restarting; }

  connect() { this.connection.connect(); }

  sendInput(bytes) { this.connection.sendInput(bytes); }

  // WebGL draws faster, but not everywhere it starts: at a device pixel ratio of 2 or 3,
  // Chromium's SwiftShader (a server without a GPU, a phone emulated) sizes its canvas in CSS
  // pixels and draws nothing, or glyphs several times too large. So what it draws is checked
  // against the buffer (WebglCheck) after it starts and after each resize or change of pixel
  // ratio (a rotation); where it draws wrong, or loses its context, xterm.js's DOM renderer
  // takes over, which draws right at every ratio.
  loadWebgl() {
    if (webglFailed) return false;
    let webgl;
    try {
      webgl = new WebglAddon();
      this.term.loadAddon(webgl);
    } catch {
      return false;
    }
    const check = new WebglCheck(this.term, (problem) => {
      webglFailed = problem;
      check.dispose();
      webgl.dispose();
      const host = $("terminal");
      host.dataset.renderer = "dom";
      host.dataset.webglProblem = problem;
    });
    webgl.onContextLoss(() => check.fail("context lost"));
    this.webglCheck = check;
    return true;
  }

  type(data) {
    if (this.ctrlArmed && data.length === 1) {
      // The key bar's Ctrl: the next letter typed becomes its control character.
      const code = data.toUpperCase().charCodeAt(0);
      if (code >= 0x40 && code <= 0x5f) data = String.fromCharCode(code & 0x1f);
      this.armCtrl(false);
    }
    this.hideHint();
    this.sendInput(encoder.encode(data));
  }

  // Ctrl+Shift+C copies, Ctrl+Shift+V pastes (Ctrl+C stays the program's interrupt).
  key(event) {
    if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
    if (event.code === "KeyC") {
      if (this.term.hasSelection()) copy(this.term.getSelection());
      event.preventDefault();
      return false;
    }
    if (event.code === "KeyV") {
      // Where the page may not read the clipboard (plain http), the browser's own paste runs.
      if (navigator.clipboard && navigator.clipboard.readText) {
        event.preventDefault();
        navigator.clipboard.readText().then((text) => this.term.paste(text), () => {
          flash("Paste with the browser's menu: this page may not read the clipboard.");
        });
      }
      return false;
    }
    return true;
  }

  armCtrl(on) {
    this.ctrlArmed = on;
    keysEl.querySelector('[data-key="ctrl"]').setAttribute("aria-pressed", String(on));
  }

  // The connection's view (see RawConnection in static/wire.js).

  hello() {
    return { cols: this.term.cols, rows: this.term.rows };
  }

  write(bytes, drawn) {
    this.term.write(bytes, () => {
      if (!this.sawOutput && !this.screenBlank()) {
        this.sawOutput = true;
        this.hideHint();
      }
      drawn();
    });
  }

  ready() {
    this.term.options.disableStdin = false;
    hideNotice();
    this.save();
    if (!this.sawOutput) {
      this.hintTimer = setTimeout(() => {
        if (!this.sawOutput && !this.finished) {
          showHint(`${titleEl.textContent} is running and waiting for you: type something `
                   + "and press Enter.");
        }
      }, SILENT_HINT_MS);
    }
  }

  fresh(line) {
    saved.forget(this.program);
    this.sawOutput = false;
    this.term.write(`\r\n\x1b[2m── ${line} ──\x1b[0m\r\n`);
  }

  unreachable() {
    return "Could not reach the server.";
  }

  // The program ended (or cannot go on): say so, keep its screen, offer to run it again.
  end(text, how) {
    this.hideHint();
    saved.forget(this.program);
    this.term.options.disableStdin = true;
    const line = how === "finished" ? "Program finished" : text;
    this.term.write(`\r\n\x1b[2m── ${line} ──\x1b[0m\r\n\x1b[?25l`);  // and no cursor
    if (how === "finished") {
      this.showState("finished", text || "finished");
      showNotice(text ? `Program finished (${text}).` : "Program finished.", null);
    } else {
      this.showState("ended", text);
      showNotice(text, null);
    }
  }

  // The screen stays, greyed and not taking input, until the session is back.
  offline(text) {
    this.term.options.disableStdin = true;
    this.showState("offline", "offline");
    showNotice(text, {
      label: this.restarting ? "Try now" : "Reconnect now",
      run: () => this.connection.reconnectNow(),
    });
    noticeRestart.hidden = Boolean(this.restarting);  // trying again already runs it anew
  }

  showState(state, text) {
    stateEl.dataset.state = state;
    screenEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // Nothing to read on the screen yet (a program may send only mode switches at start).
  screenBlank() {
    const buffer = this.term.buffer.active;
    for (let y = 0; y < buffer.length; y++) {
      if (buffer.getLine(y).translateToString(true).trim()) return false;
    }
    return true;
  }

  hideHint() {
    clearTimeout(this.hintTimer);
    hintEl.hidden = true;
  }

  // What a reload needs to come back: the token, the screen as drawn and how much was drawn.
  save() {
    if (this.finished || !this.resume) return;
    saved.store(this.program, {
      resume: this.resume,
      drawn: this.drawn,
      screen: this.serializer.serialize({ scrollback: SAVED_SCROLLBACK }),
    });
  }

  // Leave the session running on the server (for a reload, Back/Forward or a return from the
  // list within terminal.resume_seconds) and close this page's side of it.
  detach() {
    this.save();
    this.dispose();
  }

  dispose() {
    this.disposed = true;
    this.connection.dispose();
    this.hideHint();
    this.resizer.disconnect();
    cancelAnimationFrame(this.fitFrame);
    if (this.webglCheck) this.webglCheck.dispose();
    this.term.dispose();
  }
}

// Pixels this much brighter than the page's black background in a channel are drawn.
const LIT = 64;

// Is the WebGL canvas showing what the buffer holds? Read in the frame it was drawn (before
// the browser may clear its buffer): each cell with a character must show something, and
// blank cells next to nothing; until there is enough text to tell, the check waits.
class WebglCheck {
  constructor(term, failed) {
    this.term = term;
    this.failed = failed;
    this.pending = true;
    this.subscriptions = [
      term.onRender(() => { if (this.pending) this.run(); }),
      term.onResize(() => { this.pending = true; }),
    ];
    this.watchPixelRatio();
  }

  // A rotation or a zoom may change the pixel ratio without changing the terminal's size.
  watchPixelRatio() {
    const query = matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
    const changed = () => {
      this.pending = true;
      this.term.refresh(0, this.term.rows - 1);
      this.watchPixelRatio();
    };
    query.addEventListener("change", changed, { once: true });
    this.unwatch = () => query.removeEventListener("change", changed);
  }

  canvas() {
    return [...this.term.element.querySelectorAll("canvas")].find(
      (canvas) => canvas.getContext("webgl2") || canvas.getContext("webgl"));
  }

  run() {
    const canvas = this.canvas();
    if (!canvas) return;
    const verdict = drawsBuffer(this.term, canvas);
    if (verdict === null) return;  // not enough on the screen to tell yet
    this.pending = false;
    if (verdict) this.fail(verdict);
  }

  fail(problem) {
    if (!this.disposed) this.failed(problem);
  }

  dispose() {
    this.disposed = true;
    this.unwatch();
    for (const subscription of this.subscriptions) subscription.dispose();
  }
}

// "" when C{canvas} shows C{term}'s screen, a problem when not, null when too little is
// on the screen to tell (fewer than 4 characters on the default background). The pixels are
// read only then: at a ratio of 3 a phone's canvas holds some 8 MB of them.
function drawsBuffer(term, canvas) {
  const { width, height } = canvas;
  if (!width || !height) return null;
  const buffer = term.buffer.active, text = [], blank = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    if (!line) continue;
    for (let x = 0; x < term.cols; x++) {
      const cell = line.getCell(x);
      if (!cell || !cell.isBgDefault() || cell.isInverse()) continue;
      if (cell.getChars().trim()) {
        text.push([x, y]);
      } else if (cell.getWidth() && !(y === buffer.cursorY && x === buffer.cursorX)) {
        blank.push([x, y]);
      }
    }
  }
  if (text.length < 4) return null;
  const snapshot = document.createElement("canvas");
  snapshot.width = width;
  snapshot.height = height;
  const context = snapshot.getContext("2d", { willReadFrequently: true });
  context.drawImage(canvas, 0, 0);
  const pixels = context.getImageData(0, 0, width, height).data;
  const cellWidth = width / term.cols, cellHeight = height / term.rows;
  const drawn = ([x, y]) => {
    for (let py = Math.floor(y * cellHeight); py < Math.floor((y + 1) * cellHeight); py++) {
      for (let px = Math.floor(x * cellWidth); px < Math.floor((x + 1) * cellWidth); px++) {
        const i = (py * width + px) * 4;
        if (pixels[i] > LIT || pixels[i + 1] > LIT || pixels[i + 2] > LIT) return true;
      }
    }
    return false;
  };
  const textDrawn = text.filter(drawn).length, blankDrawn = blank.filter(drawn).length;
  if (textDrawn < text.length / 2) {
    return `${text.length - textDrawn} of ${text.length} characters not drawn`;
  }
  if (blankDrawn > Math.max(2, text.length / 4)) return `${blankDrawn} blank cells drawn on`;
  return "";
}

// Widths by grapheme cluster (an emoji with a skin tone, a flag, a ZWJ family: one wide
// character, two cells), as terminals that know Unicode 15 draw them; Unicode 11's table of
// single code points where the addon does not load.
function useUnicodeWidths(term) {
  try {
    term.loadAddon(new UnicodeGraphemesAddon());
    return;
  } catch { /* the Unicode 11 table below */ }
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = "11";
}

function showHint(text) {
  hintEl.textContent = text;
  hintEl.hidden = false;
}

function showNotice(text, action) {
  noticeText.textContent = text;
  noticeAction.hidden = !action;
  noticeRestart.hidden = false;
  noticeAction.onclick = null;
  if (action) {
    noticeAction.textContent = action.label;
    noticeAction.onclick = action.run;
  }
  noticeEl.hidden = false;
}

function hideNotice() {
  noticeEl.hidden = true;
  noticeRestart.hidden = false;
}

let flashTimer = null;
function flash(text) {
  if (!current) return;
  const before = statusEl.textContent;
  statusEl.textContent = text;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    if (statusEl.textContent === text) statusEl.textContent = before;
  }, 1500);
}

function copy(text) {
  if (!text) return;
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(() => flash("copied"), () => {});
  } else if (document.execCommand("copy")) {
    // Plain http: the browser's copy command, whose copy event xterm.js fills with the selection.
    flash("copied");
  }
}

function openProgram(program, fresh) {
  if (current) current.detach();
  const title = programTitle(program);
  document.title = `${title} · ${document.querySelector("h1").textContent}`;
  list.hidden = true;
  header.classList.add("compact");
  view.hidden = false;
  hideNotice();
  const before = fresh ? null : saved.load(program);
  if (fresh) saved.forget(program);
  current = new Session(program, title, before && before.resume ? before : null);
  window.jupybotSession = current;  // for a developer's console, and the page's tests
}

function showList() {
  if (current) current.detach();
  current = null;
  window.jupybotSession = null;
  document.title = document.querySelector("h1").textContent;
  view.hidden = true;
  header.classList.remove("compact");
  list.hidden = false;
}

// The URL says what is shown: /#name a program (resumed when this tab still has its session),
// / the list.
function route() {
  const program = decodeURIComponent(location.hash.slice(1));
  if (program && list.querySelector(`[data-program="${CSS.escape(program)}"]`)) {
    if (!current || current.program !== program || current.disposed) openProgram(program, false);
  } else {
    showList();
  }
}

function restart() {
  if (current) openProgram(current.program, true);
}

noticeRestart.addEventListener("click", restart);

$("back").addEventListener("click", (event) => {
  event.preventDefault();
  history.pushState(null, "", location.pathname + location.search);
  showList();
});

window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);

// A reload or leaving the page: keep the session for when this tab comes back to it.
window.addEventListener("pagehide", () => { if (current) current.save(); });
window.addEventListener("pageshow", (event) => {
  if (event.persisted && current && !current.finished) current.connect();
});
window.addEventListener("online", () => {
  if (current && !current.finished && (!current.ws || current.ws.readyState === WebSocket.CLOSED)) {
    current.connection.reconnectNow();
  }
});

// The key bar (touch screens): keys a phone keyboard lacks. Pressing a key keeps the focus
// (and so the on-screen keyboard) on the terminal.
const KEYS = {
  esc: "\x1b", tab: "\t", "ctrl-c": "\x03",
  up: "A", down: "B", right: "C", left: "D",
};
keysEl.hidden = !touch;
keysEl.addEventListener("pointerdown", (event) => {
  const button = event.target.closest("button[data-key]");
  if (!button || !current) return;
  event.preventDefault();
  const name = button.dataset.key;
  if (name === "ctrl") {
    current.armCtrl(!current.ctrlArmed);
  } else {
    let data = KEYS[name];
    if (data.length === 1 && data >= "A" && data <= "D") {
      // Arrow keys as the program asked for them (application cursor mode or not).
      data = (current.term.modes.applicationCursorKeysMode ? "\x1bO" : "\x1b[") + data;
    }
    current.hideHint();
    current.sendInput(encoder.encode(data));
  }
  current.term.focus();
});

route();
