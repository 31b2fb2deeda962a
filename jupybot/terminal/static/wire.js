// The client side of the raw terminal protocol (docs/protocol.md): its frames, and a
// RawConnection that runs one session over them (hello, resume after a lost connection,
// acknowledgements, input held while the socket is full, the server's refusals and restarts).
// Shared by jupybot's page (terminal.js) and the <jupybot-terminal> element (embed.js), which
// only draw what it tells them; an ES module, bundled into each by esbuild.config.js, and
// tested under node (tests/js/wire.test.js).

const decoder = new TextDecoder();
export const INPUT = 0x00, RESIZE = 0x01, ACK = 0x02;
export const OUTPUT = 0x10, READY = 0x11, EXIT = 0x12, ERROR = 0x13;

export function frame(type, body) {
  const bytes = new Uint8Array(1 + body.length);
  bytes[0] = type;
  bytes.set(body, 1);
  return bytes;
}

export function sizeFrame(cols, rows) {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setUint16(0, cols);
  new DataView(body.buffer).setUint16(2, rows);
  return frame(RESIZE, body);
}

export function ackFrame(count) {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setUint32(0, count);
  return frame(ACK, body);
}

// Output is acknowledged in steps of this much drawn (well below half the window).
export const ACK_EVERY = 65536;
const RECONNECT_TRIES = 8;
// Input waits in the page while the socket holds this much unsent: a huge paste does not pile
// up in the browser's socket buffer, and what was never sent goes after a resume.
const SEND_BUFFER_BYTES = 1 << 20;

// One program's session, over as many websockets as it takes. The view (the page's Session,
// the element) draws and says what happens; `view` has:
//   hello(): {cols, rows} of the terminal, for a new session and after READY
//   write(bytes, drawn): draw output, then call drawn()
//   ready(message): READY arrived, the terminal takes input again
//   fresh(line): the session is gone (expired, the server restarted); a new one starts below
//   offline(text): connection lost, retrying (reconnectNow() tries at once)
//   end(text, how): "finished" (EXIT; text empty for status 0), "refused" or "ended"
//   showState(state, text): "starting", "reconnecting" or "live", and what the bar says
//   unreachable(): what to say when a new session's connection closes without a word
export class RawConnection {
  constructor({ url, program, resumeFrom, maxFrameBytes, view }) {
    this.url = url;
    this.program = program;
    this.view = view;
    this.resume = resumeFrom ? resumeFrom.resume : null;
    this.drawn = resumeFrom ? resumeFrom.drawn : 0;  // output bytes the view has drawn
    this.maxFrameBytes = maxFrameBytes || 65536;  // READY may say otherwise
    this.unacked = 0;
    this.finished = false;
    this.disposed = false;
    this.restarting = false;
    this.retries = 0;
    this.inUseTries = 0;
    this.outbox = [];  // input not yet handed to the socket, framed as it goes
    this.live = false;  // READY received on the current socket
    this.ws = null;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.abandonSocket();  // a connection still being tried ("Reconnect now")
    this.live = false;
    const again = this.resume || this.restarting;
    this.view.showState(again ? "reconnecting" : "starting",
                        again ? "reconnecting…" : "starting…");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      // The page's Content-Security-Policy (connect-src) forbids it, or a bad address.
      this.end(`Could not start the program: this page may not connect to ${this.url} `
               + `(${error.name}).`, "ended");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const size = this.view.hello();
      const hello = this.resume
        ? { resume: this.resume, received: this.drawn }
        : { program: this.program, cols: size.cols, rows: size.rows };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => { if (this.ws === ws) this.receive(new Uint8Array(event.data)); };
    ws.onclose = (event) => { if (this.ws === ws) this.closed(event); };
  }

  // Connect again now rather than at the next try (the browser is back online, say).
  reconnectNow() {
    if (this.finished || this.disposed) return;
    this.retries = 0;
    this.connect();
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  resize(cols, rows) {
    this.send(sizeFrame(cols, rows));
  }

  sendInput(bytes) {
    if (this.finished) return;  // the key bar's keys come here even then
    if (bytes.length === 1 && bytes[0] === 0x03) {
      // Ctrl-C: like a terminal's line discipline, drop input not yet taken (a paste's rest).
      this.outbox = [];
    }
    if (bytes.length) this.outbox.push(bytes);
    this.flush();
  }

  flush() {
    clearTimeout(this.flushTimer);
    const ws = this.ws;
    if (!this.live || !ws || ws.readyState !== WebSocket.OPEN) return;  // READY sends the rest
    // Framed now, within the limit READY gave (a paste of any size goes whole, in pieces):
    // input typed before READY may have met a smaller limit than the one assumed then.
    const step = Math.max(1, this.maxFrameBytes - 1);  // the type byte
    while (this.outbox.length && ws.bufferedAmount < SEND_BUFFER_BYTES) {
      const pending = this.outbox[0];
      ws.send(frame(INPUT, pending.subarray(0, step)));
      if (pending.length > step) this.outbox[0] = pending.subarray(step);
      else this.outbox.shift();
    }
    if (this.outbox.length) this.flushTimer = setTimeout(() => this.flush(), 20);
  }

  receive(bytes) {
    const type = bytes[0];
    const body = bytes.subarray(1);
    if (type === OUTPUT) {
      // Acknowledged once drawn: the server pauses the program while the browser lags.
      this.view.write(body, () => {
        this.drawn += body.length;
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
      this.ready(message);
    } else if (type === EXIT) {
      this.end(message.code === 0 ? "" : message.message, "finished");
    } else if (type === ERROR) {
      this.refused(message);
    }
  }

  ready(message) {
    this.resume = message.resume;
    this.restarting = false;
    if (message.max_frame_kb) this.maxFrameBytes = message.max_frame_kb * 1024;
    this.unacked = 0;  // the server counts afresh for each connection
    this.retries = 0;
    this.inUseTries = 0;
    this.view.showState("live", "running");
    this.view.ready(message);
    const size = this.view.hello();
    this.send(sizeFrame(size.cols, size.rows));
    this.live = true;
    this.flush();
  }

  refused(message) {
    if (message.reason === "in-use" && this.inUseTries < 5) {
      // A reload can arrive before the server saw the old page's connection close.
      this.inUseTries += 1;
      this.abandonSocket();
      this.retryTimer = setTimeout(() => this.connect(), 300 * this.inUseTries);
      return;
    }
    if (message.reason === "expired" && this.resume) {
      // Gone while this tab was away (or the server restarted): keep the old screen to
      // read, and start the program afresh below it.
      this.resume = null;
      this.drawn = 0;
      this.outbox = [];
      this.view.fresh("That session has ended; here is a new one");
      this.abandonSocket();
      this.connect();
      return;
    }
    if (message.reason === "shutdown") {
      this.serverRestarting();
      return;
    }
    this.end(message.message || "The server refused this session.", "refused");
  }

  // The server is restarting and its programs end with it: start this one again once the
  // server is back, below the old screen, as after any outage.
  serverRestarting() {
    this.resume = null;
    this.drawn = 0;
    this.restarting = true;
    this.retries = 0;
    this.outbox = [];
    this.view.fresh("The server is restarting; this program ended");
    this.abandonSocket();
    this.closed({ code: 1001, reason: "" });
  }

  // Forget the current socket: its close is not news any more.
  abandonSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }

  closed(event) {
    if (this.finished || this.disposed) return;
    if (event.code === 1001 && event.reason === "shutdown" && !this.restarting) {
      this.serverRestarting();  // the close said so, whether or not an ERROR frame came first
      return;
    }
    if (event.code === 1000 && !this.resume) {
      this.end(event.reason || "The connection was closed.", "ended");
      return;
    }
    const again = this.resume || this.restarting;
    if (again && this.retries < RECONNECT_TRIES) {
      // Lost connection: resume the same session, replaying what we missed.
      const delay = Math.min(500 * 2 ** this.retries, 8000);
      const seconds = Math.round(delay / 1000) || 1;
      this.retries += 1;
      this.view.offline(this.restarting
        ? `The server is restarting. Starting the program again in ${seconds} s…`
        : `Connection lost. Reconnecting in ${seconds} s…`);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    } else if (again) {
      this.view.offline("Disconnected: the server cannot be reached.");
    } else {
      this.end(event.reason || this.view.unreachable(), "ended");
    }
  }

  // The program ended (or cannot go on): no more input, nor retries.
  end(text, how) {
    if (this.finished) return;
    this.finished = true;
    this.outbox = [];
    clearTimeout(this.retryTimer);
    this.view.end(text, how);
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.flushTimer);
    if (this.ws) this.ws.close(1000);
  }
}
