// The protocol's client side (jupybot/terminal/static/wire.js) under node's test runner:
// frames, the hello of a new and of a resumed session, acknowledgements, input held while the
// socket is full, and what each of the server's refusals and closes leads to. A fake WebSocket
// stands for the browser's, and node's mock timers for its clock. `make test` runs it
// (`node --test tests/js/`).
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import {
  ACK, ACK_EVERY, ERROR, EXIT, INPUT, OUTPUT, READY, RESIZE, RawConnection, ackFrame, frame,
  sizeFrame,
} from "../../jupybot/terminal/static/wire.js";

const encoder = new TextEncoder();

// A browser WebSocket as far as RawConnection uses it; the test plays the server.
class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static opened = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.bufferedAmount = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.opened.push(this);
  }

  send(data) { this.sent.push(data); }

  close(code) {
    this.closedWith = code;
    this.readyState = FakeSocket.CLOSED;
  }

  // The server's side.
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen();
  }

  hello() { return JSON.parse(this.sent[0]); }

  frames(type) { return this.sent.filter((data) => typeof data !== "string" && data[0] === type); }

  reply(type, body) {
    const bytes = typeof body === "object" && !(body instanceof Uint8Array)
      ? encoder.encode(JSON.stringify(body)) : body;
    this.onmessage({ data: frame(type, bytes).buffer });
  }

  drop(code = 1006, reason = "") {
    this.readyState = FakeSocket.CLOSED;
    this.onclose({ code, reason });
  }
}

// The page or the element, as the connection sees it: what it was told, in order.
function fakeView() {
  const told = [];
  return {
    told,
    said: (kind) => told.filter(([what]) => what === kind).map(([, ...rest]) => rest),
    hello: () => ({ cols: 80, rows: 24 }),
    write: (bytes, drawn) => { told.push(["write", bytes.length]); drawn(); },
    ready: (message) => told.push(["ready", message]),
    fresh: (line) => told.push(["fresh", line]),
    offline: (text) => told.push(["offline", text]),
    end: (text, how) => told.push(["end", text, how]),
    showState: (state, text) => told.push(["state", state, text]),
    unreachable: () => "unreachable",
  };
}

function connection(options = {}) {
  const view = fakeView();
  const wire = new RawConnection({ url: "ws://jupybot/terminal/ws", program: "quiz", view,
                                   ...options });
  wire.connect();
  return { wire, view, socket: FakeSocket.opened.at(-1) };
}

// A session the server has taken: open, READY with a resume token.
function live(options) {
  const session = connection(options);
  session.socket.open();
  session.socket.reply(READY, { resume: "token-1", title: "Quiz" });
  return session;
}

beforeEach(() => {
  FakeSocket.opened = [];
  globalThis.WebSocket = FakeSocket;
  mock.timers.enable({ apis: ["setTimeout"] });
});

afterEach(() => {
  mock.timers.reset();
  delete globalThis.WebSocket;
});

describe("frames", () => {
  test("size and acknowledgement bodies are big-endian", () => {
    assert.deepEqual([...sizeFrame(300, 40)], [RESIZE, 1, 44, 0, 40]);
    assert.deepEqual([...ackFrame(70000)], [ACK, 0, 1, 17, 112]);
  });

  test("a paste larger than a frame goes whole, in frames within the server's limit", () => {
    const { socket, wire } = live({ maxFrameBytes: 1024 });
    const paste = encoder.encode("x".repeat(2500));
    wire.sendInput(paste);
    const frames = socket.frames(INPUT);
    assert.ok(frames.every((bytes) => bytes[0] === INPUT && bytes.length <= 1024));
    assert.equal(frames.length, 3);
    const joined = Buffer.concat(frames.map((bytes) => bytes.subarray(1)));
    assert.deepEqual(new Uint8Array(joined), paste);
  });
});

describe("a new session", () => {
  test("says hello with the program and the terminal's size, then goes live on READY", () => {
    const { socket, view } = connection();
    assert.deepEqual(view.said("state")[0], ["starting", "starting…"]);
    socket.open();
    assert.deepEqual(socket.hello(), { program: "quiz", cols: 80, rows: 24 });
    socket.reply(READY, { resume: "token-1", title: "Quiz", max_frame_kb: 1 });
    assert.deepEqual(view.said("ready"), [[{ resume: "token-1", title: "Quiz", max_frame_kb: 1 }]]);
    assert.deepEqual(view.said("state").at(-1), ["live", "running"]);
    assert.deepEqual([...socket.frames(RESIZE)[0]], [...sizeFrame(80, 24)]);
  });

  test("input typed before READY waits for it, then goes within READY's frame limit", () => {
    const { socket, wire } = connection();
    socket.open();
    wire.sendInput(encoder.encode("y".repeat(3000)));
    assert.equal(socket.frames(INPUT).length, 0);
    socket.reply(READY, { resume: "token-1", max_frame_kb: 1 });
    const frames = socket.frames(INPUT);
    assert.equal(frames.length, 3);
    assert.ok(frames.every((bytes) => bytes.length <= 1024));
  });

  test("EXIT ends it: status 0 says nothing more, another its message", () => {
    const first = live();
    first.socket.reply(EXIT, { code: 0 });
    assert.deepEqual(first.view.said("end"), [["", "finished"]]);
    const second = live();
    second.socket.reply(EXIT, { code: 2, message: "exit status 2" });
    assert.deepEqual(second.view.said("end"), [["exit status 2", "finished"]]);
    second.wire.sendInput(encoder.encode("ignored"));
    assert.equal(second.socket.frames(INPUT).length, 0);
  });

  test("a refusal is said as the server words it, and not retried", () => {
    const { socket, view } = connection();
    socket.open();
    socket.reply(ERROR, { reason: "busy", message: "Too many sessions; try again later." });
    socket.drop(1008, "busy");
    mock.timers.tick(60_000);
    assert.deepEqual(view.said("end"), [["Too many sessions; try again later.", "refused"]]);
    assert.equal(FakeSocket.opened.length, 1);
  });

  test("a socket closed before any word from the server is unreachable, not retried", () => {
    const { socket, view } = connection();
    socket.drop(1006);
    mock.timers.tick(60_000);
    assert.deepEqual(view.said("end"), [["unreachable", "ended"]]);
    assert.equal(FakeSocket.opened.length, 1);
  });
});

describe("acknowledgements", () => {
  test("output is acknowledged once drawn, in steps of ACK_EVERY", () => {
    const { socket, wire } = live();
    const chunk = new Uint8Array(ACK_EVERY / 4);
    for (let i = 0; i < 3; i++) socket.reply(OUTPUT, chunk);
    assert.equal(socket.frames(ACK).length, 0);
    socket.reply(OUTPUT, chunk);
    socket.reply(OUTPUT, chunk);
    assert.deepEqual(socket.frames(ACK).map((bytes) => [...bytes]), [[...ackFrame(ACK_EVERY)]]);
    assert.equal(wire.drawn, 5 * chunk.length);
  });

  test("each connection counts afresh: what the old one had not acknowledged is not sent", () => {
    const { socket, wire } = live();
    socket.reply(OUTPUT, new Uint8Array(ACK_EVERY - 10));
    socket.drop();
    mock.timers.tick(500);
    const again = FakeSocket.opened.at(-1);
    again.open();
    again.reply(READY, { resume: "token-1" });
    again.reply(OUTPUT, new Uint8Array(20));
    assert.equal(again.frames(ACK).length, 0);
    assert.equal(wire.drawn, ACK_EVERY + 10);
  });
});

describe("flow control", () => {
  test("input waits while the socket holds a megabyte unsent, then goes in order", () => {
    const { socket, wire } = live({ maxFrameBytes: 65536 });
    socket.bufferedAmount = 1 << 20;
    wire.sendInput(encoder.encode("a"));
    wire.sendInput(encoder.encode("b"));
    assert.equal(socket.frames(INPUT).length, 0);
    mock.timers.tick(100);
    assert.equal(socket.frames(INPUT).length, 0);  // still full
    socket.bufferedAmount = 0;
    mock.timers.tick(20);
    assert.deepEqual(socket.frames(INPUT).map((bytes) => String.fromCharCode(bytes[1])), ["a", "b"]);
  });

  test("Ctrl-C drops the input not yet sent (a paste's rest) and goes itself", () => {
    const { socket, wire } = live();
    socket.bufferedAmount = 1 << 20;
    wire.sendInput(encoder.encode("z".repeat(200_000)));
    wire.sendInput(Uint8Array.of(0x03));
    socket.bufferedAmount = 0;
    mock.timers.tick(20);
    assert.deepEqual(socket.frames(INPUT).map((bytes) => [...bytes]), [[INPUT, 0x03]]);
  });

  test("input typed while offline goes after the resume", () => {
    const { socket, wire } = live();
    socket.drop();
    wire.sendInput(encoder.encode("q"));
    mock.timers.tick(500);
    const again = FakeSocket.opened.at(-1);
    again.open();
    assert.equal(again.frames(INPUT).length, 0);
    again.reply(READY, { resume: "token-1" });
    assert.deepEqual(again.frames(INPUT).map((bytes) => [...bytes]), [[INPUT, 0x71]]);
  });
});

describe("resume", () => {
  test("a lost connection resumes the session with what was drawn, backing off", () => {
    const { socket, view } = live();
    socket.reply(OUTPUT, new Uint8Array(1234));
    socket.drop(1006);
    assert.deepEqual(view.said("offline"), [["Connection lost. Reconnecting in 1 s…"]]);
    mock.timers.tick(499);
    assert.equal(FakeSocket.opened.length, 1);
    mock.timers.tick(1);
    const again = FakeSocket.opened.at(-1);
    again.open();
    assert.deepEqual(again.hello(), { resume: "token-1", received: 1234 });
    // Lost again before READY: the next wait doubles.
    again.drop(1006);
    assert.deepEqual(view.said("offline").at(-1), ["Connection lost. Reconnecting in 1 s…"]);
    mock.timers.tick(999);
    assert.equal(FakeSocket.opened.length, 2);
    mock.timers.tick(1);
    assert.equal(FakeSocket.opened.length, 3);
  });

  test("after eight tries it says the server cannot be reached, and stops", () => {
    const { socket, view } = live();
    socket.drop();
    for (let i = 0; i < 8; i++) {
      mock.timers.tick(8000);
      FakeSocket.opened.at(-1).drop();
    }
    assert.equal(FakeSocket.opened.length, 9);
    assert.deepEqual(view.said("offline").at(-1), ["Disconnected: the server cannot be reached."]);
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.opened.length, 9);
  });

  test("reconnectNow tries at once, abandoning the socket still being tried", () => {
    const { socket, wire } = live();
    socket.drop();
    mock.timers.tick(500);
    const trying = FakeSocket.opened.at(-1);
    wire.reconnectNow();
    assert.equal(trying.closedWith, 1000);
    assert.equal(FakeSocket.opened.length, 3);
    trying.drop(1000);  // its close is not news any more
    assert.equal(wire.finished, false);
  });

  test("an expired session starts afresh below the old screen", () => {
    const { socket, view } = live();
    socket.drop();
    mock.timers.tick(500);
    const again = FakeSocket.opened.at(-1);
    again.open();
    again.reply(ERROR, { reason: "expired", message: "That session has ended." });
    assert.deepEqual(view.said("fresh"), [["That session has ended; here is a new one"]]);
    const fresh = FakeSocket.opened.at(-1);
    fresh.open();
    assert.deepEqual(fresh.hello(), { program: "quiz", cols: 80, rows: 24 });
  });

  test("a resume refused as still in use (a reload's race) is tried again shortly", () => {
    const { socket } = connection({ resumeFrom: { resume: "token-1", drawn: 5 } });
    socket.open();
    socket.reply(ERROR, { reason: "in-use", message: "Open in another tab." });
    mock.timers.tick(299);
    assert.equal(FakeSocket.opened.length, 1);
    mock.timers.tick(1);
    const again = FakeSocket.opened.at(-1);
    again.open();
    assert.deepEqual(again.hello(), { resume: "token-1", received: 5 });
  });

  test("a server restarting: the program starts again once it is back", () => {
    const { socket, view, wire } = live();
    socket.drop(1001, "shutdown");
    assert.equal(wire.restarting, true);
    assert.deepEqual(view.said("fresh"), [["The server is restarting; this program ended"]]);
    assert.match(view.said("offline")[0][0], /^The server is restarting/);
    mock.timers.tick(500);
    const again = FakeSocket.opened.at(-1);
    again.open();
    assert.deepEqual(again.hello(), { program: "quiz", cols: 80, rows: 24 });
  });

  test("dispose ends it all: the socket closes and no retry follows", () => {
    const { socket, wire } = live();
    socket.drop();
    wire.dispose();
    mock.timers.tick(60_000);
    assert.equal(FakeSocket.opened.length, 1);
  });
});
