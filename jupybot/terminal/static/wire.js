// The raw terminal protocol's frames (docs/protocol.md), shared by jupybot's page and the
// <jupybot-terminal> element of /embed.js. Loaded by a <script> tag it defines JupybotWire;
// inside the /embed.js bundle it is a module of the bundle and defines nothing global.
(function (root, factory) {
  if (typeof module === "object" && module && module.exports) module.exports = factory();
  else root.JupybotWire = factory();
})(typeof self !== "undefined" ? self : globalThis, () => {
  "use strict";

  const INPUT = 0x00, RESIZE = 0x01, ACK = 0x02;
  const OUTPUT = 0x10, READY = 0x11, EXIT = 0x12, ERROR = 0x13;

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

  // Input as INPUT frames each within the server's frame limit: a paste of any size goes whole.
  function inputFrames(bytes, maxFrameBytes) {
    const step = Math.max(1, maxFrameBytes - 1);  // the type byte
    const frames = [];
    for (let start = 0; start < bytes.length; start += step) {
      frames.push(frame(INPUT, bytes.subarray(start, start + step)));
    }
    return frames;
  }

  return {
    INPUT, RESIZE, ACK, OUTPUT, READY, EXIT, ERROR,
    // The page acknowledges output in steps of this much drawn (well below half the window).
    ACK_EVERY: 65536,
    frame, sizeFrame, ackFrame, inputFrames,
  };
});
