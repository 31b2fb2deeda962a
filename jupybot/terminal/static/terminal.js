// jupybot's terminal page: the raw protocol of docs/protocol.md over one websocket per session.
"use strict";

const INPUT = 0x00, RESIZE = 0x01, ACK = 0x02;
const OUTPUT = 0x10, READY = 0x11, EXIT = 0x12, ERROR = 0x13;
const ACK_EVERY = 65536;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const list = document.getElementById("programs");
const view = document.getElementById("session");
const titleEl = document.getElementById("title");
const statusEl = document.getElementById("status");
const restartBtn = document.getElementById("restart");
const closeBtn = document.getElementById("close");

let current = null;

function frame(type, body) {
  const bytes = new Uint8Array(1 + body.length);
  bytes[0] = type;
  bytes.set(body, 1);
  return bytes;
}

function sizeFrame(cols, rows) {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setUint16(0, cols);
  new DataView(body.buffer).setUint16(2, rows);
  return frame(RESIZE, body);
}

function ackFrame(count) {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setUint32(0, count);
  return frame(ACK, body);
}

class Session {
  constructor(program, title) {
    this.program = program;
    this.resume = null;
    this.received = 0;
    this.unacked = 0;
    this.finished = false;
    this.retries = 0;
    this.term = new Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000,
                               fontFamily: "ui-monospace, Menlo, Consolas, monospace" });
    this.fit = new FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    const host = document.getElementById("terminal");
    host.replaceChildren();
    this.term.open(host);
    this.fit.fit();
    titleEl.textContent = title;
    this.term.onData((data) => this.send(frame(INPUT, encoder.encode(data))));
    this.term.onBinary((data) => this.send(frame(INPUT, Uint8Array.from(data, (c) => c.charCodeAt(0)))));
    this.term.onResize(({ cols, rows }) => this.send(sizeFrame(cols, rows)));
    this.onWindowResize = () => this.fit.fit();
    window.addEventListener("resize", this.onWindowResize);
    this.connect();
    this.term.focus();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/terminal/ws`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    setStatus(this.resume ? "reconnecting…" : "starting…");
    ws.onopen = () => {
      const hello = this.resume
        ? { resume: this.resume, received: this.received }
        : { program: this.program, cols: this.term.cols, rows: this.term.rows };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => this.receive(new Uint8Array(event.data));
    ws.onclose = (event) => this.closed(event);
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  receive(bytes) {
    const type = bytes[0];
    const body = bytes.subarray(1);
    if (type === OUTPUT) {
      this.received += body.length;
      // Acknowledge once xterm.js has drawn it: the server pauses the program when we lag.
      this.term.write(body, () => {
        this.unacked += body.length;
        if (this.unacked >= ACK_EVERY) {
          this.send(ackFrame(this.unacked));
          this.unacked = 0;
        }
      });
      return;
    }
    const message = body.length ? JSON.parse(decoder.decode(body)) : {};
    if (type === READY) {
      this.resume = message.resume;
      this.unacked = 0;  // the server counts afresh for each connection
      this.retries = 0;
      setStatus("running");
      this.send(sizeFrame(this.term.cols, this.term.rows));
    } else if (type === EXIT) {
      this.finished = true;
      this.term.write(`\r\n\x1b[2m[${message.message}]\x1b[0m\r\n`);
      setStatus(message.message);
      restartBtn.hidden = false;
    } else if (type === ERROR) {
      this.finished = true;
      this.term.write(`\r\n\x1b[31m${message.message}\x1b[0m\r\n`);
      setStatus(message.message);
      restartBtn.hidden = false;
    }
  }

  closed(event) {
    if (this.finished || this.disposed) return;
    if (this.resume && this.retries < 8) {
      // Lost connection: resume the same session, replaying what we missed.
      const delay = Math.min(500 * 2 ** this.retries, 8000);
      this.retries += 1;
      setStatus(`connection lost; reconnecting in ${Math.round(delay / 1000)} s…`);
      setTimeout(() => this.connect(), delay);
    } else {
      this.finished = true;
      setStatus(event.reason || "disconnected");
      restartBtn.hidden = false;
    }
  }

  dispose() {
    this.disposed = true;
    window.removeEventListener("resize", this.onWindowResize);
    if (this.ws) this.ws.close(1000);
    this.term.dispose();
  }
}

function setStatus(text) {
  statusEl.textContent = text;
}

function open(program, title) {
  if (current) current.dispose();
  list.hidden = true;
  view.hidden = false;
  restartBtn.hidden = true;
  current = new Session(program, title);
}

list.addEventListener("click", (event) => {
  const button = event.target.closest("button.program");
  if (button) open(button.dataset.program, button.querySelector(".title").textContent);
});

restartBtn.addEventListener("click", () => {
  if (current) open(current.program, titleEl.textContent);
});

closeBtn.addEventListener("click", () => {
  if (current) current.dispose();
  current = null;
  view.hidden = true;
  list.hidden = false;
});
