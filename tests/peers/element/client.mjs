// A person on Element, for the Matrix tests: matrix-js-sdk with its Rust crypto (the stack
// Element Web runs), logged in with a password, cross-signed as at a first Element login, and
// in OnlySignedDevicesIsolationMode ("exclude insecure devices", Element's default since 2026).
//
// Driven over stdin/stdout, one JSON object a line. The test sends {"id", "op", ...} and reads
// {"id", "ok", ...} back; everything the person sees arrives as {"event": ...} lines: "ready",
// "member", "message" (each time an event is shown or its decryption changes).
//
//   node client.mjs <homeserver URL> <user id> <password>

import { webcrypto } from "node:crypto";
import readline from "node:readline";

import * as sdk from "matrix-js-sdk";
import {
  AllDevicesIsolationMode,
  OnlySignedDevicesIsolationMode,
  VerificationPhase,
  VerificationRequestEvent,
  VerifierEvent,
  CryptoEvent,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const [baseUrl, userId, password] = process.argv.slice(2);
logger.setLevel(process.env.ELEMENT_PEER_LOG || "warn");

function print(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

const passwordAuth = {
  type: "m.login.password",
  identifier: { type: "m.id.user", user: userId },
  password,
};

// The secret storage key once made (the "secret_storage" operation), for the SDK to use again.
let secretStorageKey = null;
const cryptoCallbacks = {
  getSecretStorageKey: async ({ keys }) => {
    const keyId = Object.keys(keys).find((id) => secretStorageKey?.keyId === id);
    return keyId ? [keyId, secretStorageKey.privateKey] : null;
  },
  cacheSecretStorageKey: (keyId, keyInfo, privateKey) => {
    secretStorageKey = { keyId, privateKey };
  },
};

async function logIn() {
  const anonymous = sdk.createClient({ baseUrl });
  const login = await anonymous.loginRequest({
    ...passwordAuth,
    initial_device_display_name: "Element (jupybot tests)",
  });
  return sdk.createClient({
    baseUrl,
    userId: login.user_id,
    accessToken: login.access_token,
    deviceId: login.device_id,
    cryptoCallbacks,
  });
}

const client = await logIn();
await client.initRustCrypto({ useIndexedDB: false });
const crypto = client.getCrypto();
crypto.setDeviceIsolationMode(
  process.env.ELEMENT_PEER_ALL_DEVICES
    ? new AllDevicesIsolationMode(false)
    : new OnlySignedDevicesIsolationMode(),
);
// What Element does at a first login: a new cross-signing identity, the upload confirmed with
// the account's password.
await crypto.bootstrapCrossSigning({
  setupNewCrossSigning: true,
  authUploadDeviceSigningKeys: async (makeRequest) => {
    await makeRequest(passwordAuth);
  },
});

async function describe(event) {
  const shown = {
    event: "message",
    room_id: event.getRoomId(),
    event_id: event.getId(),
    sender: event.getSender(),
    type: event.getType(),
    content: event.getContent(),
    encrypted: event.isEncrypted(),
    failure: event.decryptionFailureReason ?? null,
  };
  if (event.isEncrypted() && !event.isDecryptionFailure()) {
    const info = await crypto.getEncryptionInfoForEvent(event);
    shown.shield = info ? { colour: info.shieldColour, reason: info.shieldReason } : null;
  }
  return shown;
}

client.on(sdk.RoomEvent.Timeline, async (event, room, toStartOfTimeline) => {
  if (toStartOfTimeline) return;
  if (event.getType() === "m.room.member") {
    print({
      event: "member",
      room_id: event.getRoomId(),
      user_id: event.getStateKey(),
      membership: event.getContent().membership,
    });
    return;
  }
  // Encrypted events are printed once decrypted (or not), below.
  if (event.isEncrypted() || event.isBeingDecrypted()) return;
  print(await describe(event));
});
client.on(sdk.MatrixEventEvent.Decrypted, async (event) => {
  if (event.getRoomId()) print(await describe(event));
});

async function decryptAttachment(file) {
  // The attachment format of the spec ("Sending encrypted attachments"): AES-256-CTR, with
  // the SHA-256 of the ciphertext.
  const [server, mediaId] = file.url.slice("mxc://".length).split("/");
  const response = await fetch(`${baseUrl}/_matrix/client/v1/media/download/${server}/${mediaId}`, {
    headers: { Authorization: `Bearer ${client.getAccessToken()}` },
  });
  if (!response.ok) throw new Error(`download: HTTP ${response.status}`);
  const ciphertext = new Uint8Array(await response.arrayBuffer());
  const digest = Buffer.from(await webcrypto.subtle.digest("SHA-256", ciphertext))
    .toString("base64")
    .replace(/=+$/, "");
  if (digest !== file.hashes.sha256) throw new Error("the attachment's hash does not match");
  const key = await webcrypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, [
    "decrypt",
  ]);
  const iv = Buffer.from(file.iv, "base64");
  const plain = await webcrypto.subtle.decrypt(
    { name: "AES-CTR", counter: iv, length: 64 },
    key,
    ciphertext,
  );
  return Buffer.from(plain);
}

const operations = {
  async create_dm({ user }) {
    // As Element opens a direct chat: trusted private, encrypted from the first event.
    const { room_id } = await client.createRoom({
      preset: sdk.Preset.TrustedPrivateChat,
      is_direct: true,
      invite: [user],
      initial_state: [
        {
          type: "m.room.encryption",
          state_key: "",
          content: { algorithm: "m.megolm.v1.aes-sha2" },
        },
      ],
    });
    return { room_id };
  },
  async create_room({ invite, encrypted = true }) {
    // As Element makes a private room: invite only, encrypted (unless asked not to be).
    const encryption = {
      type: "m.room.encryption",
      state_key: "",
      content: { algorithm: "m.megolm.v1.aes-sha2" },
    };
    const { room_id } = await client.createRoom({
      preset: sdk.Preset.PrivateChat,
      invite,
      initial_state: encrypted ? [encryption] : [],
    });
    return { room_id };
  },
  async edit({ room_id, event_id, body }) {
    // As Element edits a message: the new text in m.new_content, "* " before the fallback.
    const { event_id: edit_id } = await client.sendMessage(room_id, {
      msgtype: "m.text",
      body: `* ${body}`,
      "m.new_content": { msgtype: "m.text", body },
      "m.relates_to": { rel_type: "m.replace", event_id },
    });
    return { event_id: edit_id };
  },
  async send({ room_id, body }) {
    const { event_id } = await client.sendTextMessage(room_id, body);
    return { event_id };
  },
  async devices({ user }) {
    // As Element's member list reads them: fresh from the server.
    const map = await crypto.getUserDeviceInfo([user], true);
    const devices = [];
    for (const deviceId of (map.get(user) || new Map()).keys()) {
      const status = await crypto.getDeviceVerificationStatus(user, deviceId);
      devices.push({
        device_id: deviceId,
        signed_by_owner: status?.signedByOwner ?? false,
        cross_signing_verified: status?.crossSigningVerified ?? false,
      });
    }
    const identity = await crypto.getUserVerificationStatus(user);
    return {
      devices,
      identity_known: identity.known,
      identity_verified: identity.isCrossSigningVerified(),
    };
  },
  async verify({ user, room_id }) {
    // What a person does in Element: the bot's profile, "Verify", then "Verify by emoji"; the
    // emojis shown are confirmed as matching (the test compares them with the bot's).
    const request = await crypto.requestVerificationDM(user, room_id);
    await new Promise((resolve, reject) => {
      const check = () => {
        if (request.phase === VerificationPhase.Ready) resolve();
        if (request.phase === VerificationPhase.Cancelled)
          reject(new Error(`cancelled: ${request.cancellationCode}`));
      };
      request.on(VerificationRequestEvent.Change, check);
      check();
    });
    // Element signs the bot's master key with its user-signing key once the verification is
    // done, a moment after verify() resolves.
    const trusted = new Promise((resolve) => {
      client.on(CryptoEvent.UserTrustStatusChanged, (userId, status) => {
        if (userId === user && status.isCrossSigningVerified()) resolve();
      });
    });
    const verifier = await request.startVerification("m.sas.v1");
    let emoji = null;
    verifier.on(VerifierEvent.ShowSas, (callbacks) => {
      emoji = callbacks.sas.emoji.map(([symbol, name]) => `${symbol} ${name}`);
      callbacks.confirm();
    });
    await verifier.verify();
    await trusted;
    const status = await crypto.getUserVerificationStatus(user);
    return { emoji, verified: status.isCrossSigningVerified() };
  },
  async secret_storage() {
    // What Element's "Set up recovery" does: a new secret storage key, the cross-signing keys
    // stored under it; the recovery key is what Element shows the person once.
    const generated = await crypto.createRecoveryKeyFromPassphrase();
    await crypto.bootstrapSecretStorage({
      createSecretStorageKey: async () => generated,
      setupNewSecretStorage: true,
    });
    return { recovery_key: generated.encodedPrivateKey };
  },
  async image({ content }) {
    const data = content.file ? await decryptAttachment(content.file) : null;
    return { bytes: data ? data.length : 0, head: data ? data.subarray(0, 8).toString("hex") : "" };
  },
};

readline.createInterface({ input: process.stdin }).on("line", async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  try {
    const result = await operations[request.op](request);
    print({ id: request.id, ok: true, ...result });
  } catch (error) {
    print({ id: request.id, ok: false, error: String(error?.stack || error) });
  }
});
process.stdin.on("end", () => {
  client.stopClient();
  process.exit(0);
});

client.once(sdk.ClientEvent.Sync, (state) => {
  print({ event: "ready", user_id: client.getUserId(), device_id: client.getDeviceId(), state });
});
await client.startClient({ initialSyncLimit: 10 });
