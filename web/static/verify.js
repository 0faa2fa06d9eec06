/*
 * verify.js — check a Suyuan log in the browser (docs/FORMAT.md is normative).
 *
 * What it checks, with nothing but the page's verifier key (vkey) as trust root:
 *
 *   1. the log's checkpoint: a C2SP tlog-checkpoint signed as a C2SP signed note
 *      by the log key (Ed25519), whose origin is the key's name;
 *   2. each entry the page shows: its leaf hash SHA-256(0x00 || leaf) recomputed
 *      from the leaf bytes, and its RFC 9162 inclusion proof against the root of
 *      that *verified* checkpoint (never against what the entry response claims);
 *   3. that the page shows what the log holds: the fields the page lists in
 *      data-expect are read from the leaf JSON itself, and a label's hash prefix
 *      (`?h=` on QR codes) is a prefix of the recomputed leaf hash;
 *   4. as a light witness: the newest checkpoint this browser verified for the
 *      origin (kept in localStorage) must be consistent (RFC 9162 §2.1.4) with
 *      today's, so a log that rewrites its history is caught on the next visit;
 *   5. the witnesses' cosignatures on that checkpoint (C2SP tlog-cosignature,
 *      Ed25519 cosignature/v1), each against the witness key the page lists
 *      (data-witnesses): only those that verify are counted ("witnessed by N");
 *      a bad one is a warning, not a failure of the log's signature or proofs.
 *
 * Pure functions (parseVkey, parseNote, openNote, verifyCheckpoint, leafHash,
 * verifyInclusion, verifyConsistency, …) are exported for tests and for the
 * auditor page; they resolve or throw a VerifyError, never return a flag.
 * verifyPanel(el) drives one `[data-verify-panel]` element; every such element
 * on the page is checked on DOMContentLoaded.
 *
 * Ed25519 goes through WebCrypto; a browser without Ed25519 in WebCrypto gets the
 * vendored @noble/ed25519 (vendor/README.md), loaded only then.  SHA-256 always
 * comes from WebCrypto, which browsers offer on HTTPS pages (and localhost) only.
 *
 * The panel's visible words come from data-msg-* attributes that the server
 * renders translated; this script fills in numbers, names and reasons only.
 * It MUST NOT leave a panel `pending`: every path ends `verified` or `failed`,
 * at the latest when the time limit (15 s) runs out.
 */

const HASH_SIZE = 32;
const KEY_HASH_SIZE = 4;
const ALG_ED25519 = 0x01;
const ALG_COSIGNATURE_V1 = 0x04; // C2SP tlog-cosignature: Ed25519 cosignature/v1
const COSIGNATURE_SIZE = 8 + 64; // u64 big-endian timestamp || Ed25519 signature
const MAX_TIMESTAMP = (1n << 63n) - 1n;
const ED25519_PUBLIC_SIZE = 32;
const ED25519_SIGNATURE_SIZE = 64;
const MAX_NOTE_BYTES = 1 << 20;
const MAX_SIGNATURES = 100;
const MAX_TREE_SIZE = (1n << 64n) - 1n;
const SIG_PREFIX = "\u2014 "; // em dash, space
const DEFAULT_TIMEOUT_MS = 15000;
const ENTRY_CONCURRENCY = 4;
const STORAGE_PREFIX = "suyuan:checkpoint:";
const NOBLE_URL = new URL("./vendor/noble-ed25519.js", import.meta.url).href;

/** Every failed check. `code` groups reasons the page can word in its own language. */
export class VerifyError extends Error {
  constructor(message, code = "invalid") {
    super(message);
    this.name = "VerifyError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// bytes

const utf8 = new TextEncoder();

function show(value, max = 60) {
  const text = typeof value === "string" ? value : String(value);
  return JSON.stringify(text.length > max ? text.slice(0, max) + "…" : text);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  if (typeof text !== "string" || !/^(?:[0-9a-f]{2})*$/.test(text)) {
    throw new VerifyError(`expected lower-case hex, found ${show(text)}`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function b64encode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decode canonical standard base64 (RFC 4648 §4, padded, zero pad bits) or throw. */
export function b64decode(text, what = "base64") {
  if (typeof text !== "string" || !B64_RE.test(text)) {
    throw new VerifyError(`expected standard base64 for ${what}, found ${show(text)}`);
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  if (b64encode(out) !== text) {
    throw new VerifyError(`expected canonical base64 for ${what}, found ${show(text)}`);
  }
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function isBytes(value) {
  return value instanceof Uint8Array;
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) {
    throw new VerifyError(
      "this browser offers no WebCrypto here (pages must be served over HTTPS)",
      "crypto",
    );
  }
  return s;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

function decodeUtf8(bytes, what) {
  try {
    // ignoreBOM: a BOM is kept as text (and then refused), never silently dropped.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new VerifyError(`expected ${what} to be valid UTF-8`);
  }
}

function isWellFormed(text) {
  if (typeof text.isWellFormed === "function") return text.isWellFormed();
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?:[^\ud800-\udbff]|^)[\udc00-\udfff]/.test(text);
}

// ---------------------------------------------------------------------------
// Ed25519: WebCrypto, else the vendored @noble/ed25519

// RFC 8032 §7.1 test 1 (empty message): proves a backend really verifies.
const PROBE_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const PROBE_SIGNATURE =
  "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

let backendChoice = "auto";
let backendPromise = null;
let noblePromise = null;

/** Force "webcrypto" or "noble", or go back to "auto" (WebCrypto when it works). For tests. */
export function setEd25519Backend(choice) {
  if (!["auto", "webcrypto", "noble"].includes(choice)) {
    throw new VerifyError(`expected an Ed25519 backend auto|webcrypto|noble, found ${show(choice)}`);
  }
  backendChoice = choice;
  backendPromise = null;
}

async function webcryptoVerify(publicKey, signature, message) {
  const key = await subtle().importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return subtle().verify({ name: "Ed25519" }, key, signature, message);
}

async function webcryptoWorks() {
  try {
    const ok = await webcryptoVerify(fromHex(PROBE_PUBLIC), fromHex(PROBE_SIGNATURE), new Uint8Array(0));
    return ok === true;
  } catch {
    return false;
  }
}

function loadNoble() {
  if (noblePromise === null) {
    noblePromise = import(NOBLE_URL).catch((err) => {
      noblePromise = null;
      throw new VerifyError(`could not load the Ed25519 fallback (${err && err.message})`, "crypto");
    });
  }
  return noblePromise;
}

/** The backend in use: "webcrypto" or "noble". */
export function ed25519Backend() {
  if (backendPromise === null) {
    backendPromise =
      backendChoice === "auto"
        ? webcryptoWorks().then((ok) => (ok ? "webcrypto" : "noble"))
        : Promise.resolve(backendChoice);
  }
  return backendPromise;
}

/**
 * Verify an Ed25519 signature (RFC 8032).  Resolves true or false; malformed
 * keys or signatures are false.  The fallback runs noble in its strict
 * RFC 8032 / FIPS 186-5 mode (zip215: false), like the server's OpenSSL.
 */
export async function ed25519Verify(publicKey, signature, message) {
  if (!isBytes(publicKey) || publicKey.length !== ED25519_PUBLIC_SIZE) return false;
  if (!isBytes(signature) || signature.length !== ED25519_SIGNATURE_SIZE) return false;
  subtle(); // both backends hash with WebCrypto: say so plainly if it is missing
  if ((await ed25519Backend()) === "webcrypto") {
    try {
      return (await webcryptoVerify(publicKey, signature, message)) === true;
    } catch {
      return false;
    }
  }
  const ed = await loadNoble();
  try {
    return (await ed.verifyAsync(signature, message, publicKey, { zip215: false })) === true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// key names and verifier keys (C2SP signed-note)

/** A key name: non-empty, well-formed Unicode, no white space, no '+', no control characters. */
export function checkKeyName(name) {
  if (typeof name !== "string" || name === "") {
    throw new VerifyError(`expected a non-empty key name, found ${show(name)}`);
  }
  if (/[\s\x85]/u.test(name)) {
    throw new VerifyError(`expected a key name without spaces, found ${show(name)}`);
  }
  if (name.includes("+")) throw new VerifyError(`expected a key name without '+', found ${show(name)}`);
  if (/[\x00-\x1f]/.test(name)) {
    throw new VerifyError(`expected a key name without control characters, found ${show(name)}`);
  }
  if (!isWellFormed(name)) {
    throw new VerifyError(`expected a key name of valid Unicode, found ${show(name)}`);
  }
  return name;
}

/** Key hash (key ID): SHA-256(name || 0x0A || 0x01 || public key)[:4]. */
export async function keyHash(name, publicKey) {
  checkKeyName(name);
  if (!isBytes(publicKey) || publicKey.length !== ED25519_PUBLIC_SIZE) {
    throw new VerifyError(`expected a ${ED25519_PUBLIC_SIZE}-byte Ed25519 public key`);
  }
  const digest = await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a, ALG_ED25519), publicKey));
  return digest.slice(0, KEY_HASH_SIZE);
}

/**
 * Parse a verifier key `name+hex8+base64(0x01 || 32-byte Ed25519 key)`.
 * Splits on the first two '+' only (the base64 may hold '+').  The key hash
 * MUST match the one computed from the name and key.
 */
export async function parseVkey(vkey) {
  if (typeof vkey !== "string") throw new VerifyError(`expected a vkey string, found ${typeof vkey}`);
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  if (second < 0) throw new VerifyError(`expected a vkey 'name+hex8+base64', found ${show(vkey)}`);
  const name = vkey.slice(0, first);
  const hex8 = vkey.slice(first + 1, second);
  checkKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(hex8)) {
    throw new VerifyError(`expected 8 lower-case hex digits after the vkey name, found ${show(hex8)}`);
  }
  const raw = b64decode(vkey.slice(second + 1), "the vkey's key");
  if (raw.length === 0 || raw[0] !== ALG_ED25519) {
    const found = raw.length ? "0x" + raw[0].toString(16).padStart(2, "0") : "nothing";
    throw new VerifyError(`expected signature type 0x01 (Ed25519) in the vkey, found ${found}`);
  }
  if (raw.length !== 1 + ED25519_PUBLIC_SIZE) {
    throw new VerifyError(
      `expected a ${ED25519_PUBLIC_SIZE}-byte Ed25519 key in the vkey, found ${raw.length - 1} bytes`,
    );
  }
  const publicKey = raw.slice(1);
  const computed = await keyHash(name, publicKey);
  if (hex(computed) !== hex8) {
    throw new VerifyError(`expected key hash ${hex(computed)} in the vkey, found ${hex8}`);
  }
  return { name, keyHash: computed, keyId: `${name}+${hex8}`, publicKey, vkey };
}

// ---------------------------------------------------------------------------
// signed notes

/**
 * Parse a signed note strictly (as ledger/note.py open_note): valid UTF-8 of at
 * most 1 MiB, no control character but newline; the text runs to the last blank
 * line and keeps its final newline; then 1..100 lines `— name base64(key hash ||
 * signature)`, each ending in a newline, canonical base64, no key twice.
 */
export function parseNote(note) {
  let all;
  if (isBytes(note)) {
    if (note.length > MAX_NOTE_BYTES) {
      throw new VerifyError(`expected a note of at most ${MAX_NOTE_BYTES} bytes, found ${note.length}`);
    }
    all = decodeUtf8(note, "the note");
  } else if (typeof note === "string") {
    all = note;
    if (!isWellFormed(all)) throw new VerifyError("expected the note to be valid Unicode");
    if (utf8.encode(all).length > MAX_NOTE_BYTES) {
      throw new VerifyError(`expected a note of at most ${MAX_NOTE_BYTES} bytes`);
    }
  } else {
    throw new VerifyError(`expected a note as text or bytes, found ${typeof note}`);
  }
  const bad = /[\x00-\x09\x0b-\x1f]/.exec(all);
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw new VerifyError(
      `expected no control characters other than newline in the note, found U+${code} at offset ${bad.index}`,
    );
  }
  const split = all.lastIndexOf("\n\n");
  if (split < 0) throw new VerifyError("expected a blank line between the note text and its signatures");
  const text = all.slice(0, split + 1);
  const block = all.slice(split + 2);
  if (!block) throw new VerifyError("expected signature lines after the blank line, found none");
  if (!block.endsWith("\n")) throw new VerifyError("expected the note to end with a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) {
    throw new VerifyError(`expected at most ${MAX_SIGNATURES} signature lines, found ${lines.length}`);
  }
  const seen = new Set();
  const signatures = lines.map((line, i) => {
    const number = i + 1;
    if (!line.startsWith(SIG_PREFIX)) {
      throw new VerifyError(
        `expected signature line ${number} to start with '— ' (U+2014, space), found ${show(line)}`,
      );
    }
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    if (space < 0 || space === rest.length - 1) {
      throw new VerifyError(`expected 'name base64' on signature line ${number}, found ${show(line)}`);
    }
    const name = rest.slice(0, space);
    try {
      checkKeyName(name);
    } catch (err) {
      throw new VerifyError(`signature line ${number}: ${err.message}`);
    }
    const raw = b64decode(rest.slice(space + 1), `the signature on signature line ${number}`);
    if (raw.length <= KEY_HASH_SIZE) {
      throw new VerifyError(
        `expected more than ${KEY_HASH_SIZE} bytes of key hash and signature on signature line ${number}, found ${raw.length}`,
      );
    }
    const sig = { name, keyHash: raw.slice(0, KEY_HASH_SIZE), signature: raw.slice(KEY_HASH_SIZE) };
    sig.keyId = `${name}+${hex(sig.keyHash)}`;
    if (seen.has(sig.keyId)) throw new VerifyError(`expected one signature per key, found ${sig.keyId} twice`);
    seen.add(sig.keyId);
    return sig;
  });
  return { text, signatures };
}

/**
 * Parse a note and verify it with the known verifiers (parsed vkeys).  Every
 * signature by a known key MUST verify; signatures by other keys (e.g. witness
 * cosignatures) are returned unchecked in `unverified`; at least one signature
 * must be by a known key.  Resolves {text, verified, unverified} or throws.
 */
export async function openNote(note, verifiers) {
  if (!Array.isArray(verifiers) || verifiers.length === 0) {
    throw new VerifyError("expected at least one verifier key");
  }
  const known = new Map(verifiers.map((v) => [`${v.name}+${hex(v.keyHash)}`, v]));
  const { text, signatures } = parseNote(note);
  const message = utf8.encode(text);
  const verified = [];
  const unverified = [];
  for (const sig of signatures) {
    const key = known.get(sig.keyId);
    if (!key) {
      unverified.push(sig);
      continue;
    }
    if (!(await ed25519Verify(key.publicKey, sig.signature, message))) {
      throw new VerifyError(`the signature by ${sig.keyId} does not verify`, "signature");
    }
    verified.push(sig);
  }
  if (verified.length === 0) {
    const by = unverified.slice(0, 5).map((s) => s.keyId).join(", ");
    throw new VerifyError(`no signature by a known key: note signed by ${by}`, "signature");
  }
  return { text, verified, unverified };
}

// ---------------------------------------------------------------------------
// checkpoints (C2SP tlog-checkpoint)

/** Parse checkpoint text: origin, decimal size, base64 32-byte root, optional extension lines. */
export function parseCheckpointText(text) {
  if (typeof text !== "string" || !text.endsWith("\n")) {
    throw new VerifyError("expected the checkpoint text to end with a newline");
  }
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) {
    throw new VerifyError(
      `expected at least 3 checkpoint lines (origin, size, root hash), found ${lines.length}`,
    );
  }
  const [origin, sizeLine, rootLine, ...extensions] = lines;
  if (!origin) throw new VerifyError("expected a non-empty origin on checkpoint line 1");
  if (origin !== origin.trim() || /[\x00-\x1f]/.test(origin)) {
    throw new VerifyError(`expected an origin without surrounding space, found ${show(origin)}`);
  }
  if (!/^(?:0|[1-9][0-9]{0,19})$/.test(sizeLine)) {
    throw new VerifyError(
      `expected the tree size on checkpoint line 2 in decimal without sign or leading zeros, found ${show(sizeLine)}`,
    );
  }
  const size = BigInt(sizeLine);
  if (size > MAX_TREE_SIZE) throw new VerifyError(`expected a tree size of at most 2**64-1, found ${sizeLine}`);
  const root = b64decode(rootLine, "the root hash on checkpoint line 3");
  if (root.length !== HASH_SIZE) {
    throw new VerifyError(
      `expected a ${HASH_SIZE}-byte root hash on checkpoint line 3, found ${root.length} bytes`,
    );
  }
  extensions.forEach((line, i) => {
    if (!line) throw new VerifyError(`expected a non-empty extension line on checkpoint line ${i + 4}`);
  });
  return { origin, size, root, extensions };
}

/**
 * Verify a checkpoint note signed by the log key `vkey` (a string or a parsed
 * vkey).  Its origin MUST equal the key's name.  Resolves {origin, size
 * (BigInt), root, extensions, note, signer: {name, keyId}, cosignatures}.
 */
export async function verifyCheckpoint(note, vkey) {
  const key = typeof vkey === "string" ? await parseVkey(vkey) : vkey;
  const opened = await openNote(note, [key]);
  const cp = parseCheckpointText(opened.text);
  if (cp.origin !== key.name) {
    throw new VerifyError(
      `checkpoint origin ${show(cp.origin)} does not match the log key name ${show(key.name)}`,
      "signature",
    );
  }
  const [signer] = opened.verified;
  return {
    ...cp,
    text: opened.text,
    note: isBytes(note) ? decodeUtf8(note, "the note") : note,
    signer: { name: signer.name, keyId: signer.keyId },
    cosignatures: opened.unverified,
  };
}

// ---------------------------------------------------------------------------
// witness cosignatures (C2SP tlog-cosignature, Ed25519 cosignature/v1)

/** Cosigner key ID: SHA-256(name || 0x0A || 0x04 || public key)[:4] ("Format"). */
export async function cosignatureKeyHash(name, publicKey) {
  checkKeyName(name);
  if (!isBytes(publicKey) || publicKey.length !== ED25519_PUBLIC_SIZE) {
    throw new VerifyError(`expected a ${ED25519_PUBLIC_SIZE}-byte Ed25519 public key`);
  }
  const digest = await sha256(
    concat(utf8.encode(name), Uint8Array.of(0x0a, ALG_COSIGNATURE_V1), publicKey),
  );
  return digest.slice(0, KEY_HASH_SIZE);
}

/**
 * Parse a witness vkey `name+hex8+base64(0x04 || 32-byte Ed25519 key)` (a note
 * vkey of signature type 0x04).  The key ID MUST match the name and key.
 */
export async function parseWitnessVkey(vkey) {
  if (typeof vkey !== "string") throw new VerifyError(`expected a witness vkey string, found ${typeof vkey}`);
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  if (second < 0) throw new VerifyError(`expected a witness vkey 'name+hex8+base64', found ${show(vkey)}`);
  const name = vkey.slice(0, first);
  const hex8 = vkey.slice(first + 1, second);
  checkKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(hex8)) {
    throw new VerifyError(`expected 8 lower-case hex digits after the vkey name, found ${show(hex8)}`);
  }
  const raw = b64decode(vkey.slice(second + 1), "the witness vkey's key");
  if (raw.length === 0 || raw[0] !== ALG_COSIGNATURE_V1) {
    const found = raw.length ? "0x" + raw[0].toString(16).padStart(2, "0") : "nothing";
    throw new VerifyError(`expected signature type 0x04 (cosignature/v1) in the witness vkey, found ${found}`);
  }
  if (raw.length !== 1 + ED25519_PUBLIC_SIZE) {
    throw new VerifyError(
      `expected a ${ED25519_PUBLIC_SIZE}-byte Ed25519 key in the witness vkey, found ${raw.length - 1} bytes`,
    );
  }
  const publicKey = raw.slice(1);
  const computed = await cosignatureKeyHash(name, publicKey);
  if (hex(computed) !== hex8) {
    throw new VerifyError(`expected key hash ${hex(computed)} in the witness vkey, found ${hex8}`);
  }
  return { name, keyHash: computed, keyId: `${name}+${hex8}`, publicKey, vkey };
}

/**
 * The message an Ed25519 cosignature signs ("Ed25519 signed message"):
 * `cosignature/v1\n` + `time <timestamp>\n` + the checkpoint text (final newline included).
 */
export function cosignatureMessage(text, timestamp) {
  if (typeof text !== "string" || !text.endsWith("\n")) {
    throw new VerifyError("expected the checkpoint text to end with a newline");
  }
  const stamp = BigInt(timestamp);
  if (stamp < 0n || stamp > MAX_TIMESTAMP) {
    throw new VerifyError(`expected a cosignature timestamp in 0..2**63-1, found ${stamp}`);
  }
  return utf8.encode(`cosignature/v1\ntime ${stamp}\n${text}`);
}

/**
 * Verify one cosignature (a parsed signature line: {name, keyHash, signature}) by
 * `witness` (a parsed witness vkey) over the checkpoint text.  Resolves the
 * cosignature's timestamp (BigInt) or throws VerifyError.
 */
export async function verifyCosignature(text, sig, witness) {
  if (sig.name !== witness.name || !equalBytes(sig.keyHash, witness.keyHash)) {
    throw new VerifyError(`the cosignature by ${sig.keyId} is not by witness ${witness.keyId}`);
  }
  if (!isBytes(sig.signature) || sig.signature.length !== COSIGNATURE_SIZE) {
    throw new VerifyError(
      `expected a ${COSIGNATURE_SIZE}-byte timestamped cosignature by ${witness.keyId}, found ${sig.signature.length}`,
    );
  }
  let stamp = 0n;
  for (const byte of sig.signature.slice(0, 8)) stamp = (stamp << 8n) | BigInt(byte);
  if (stamp > MAX_TIMESTAMP) {
    throw new VerifyError(`the cosignature by ${witness.keyId} has a timestamp above 2**63-1`);
  }
  const message = cosignatureMessage(text, stamp);
  if (!(await ed25519Verify(witness.publicKey, sig.signature.slice(8), message))) {
    throw new VerifyError(`the cosignature by ${witness.keyId} (time ${stamp}) does not verify`);
  }
  return stamp;
}

/**
 * Check every signature line of a checkpoint (`signatures`, e.g. a verified
 * checkpoint's `cosignatures`) by one of the `witnesses` (parsed witness vkeys).
 * Lines of other keys are ignored.  Resolves {valid: [{name, keyId, timestamp}],
 * invalid: [{name, keyId, reason}]}; never throws for a bad line (it is reported).
 */
export async function checkCosignatures(text, signatures, witnesses) {
  const known = new Map(witnesses.map((w) => [w.keyId, w]));
  const valid = [];
  const invalid = [];
  for (const sig of signatures) {
    const witness = known.get(sig.keyId);
    if (!witness) continue;
    try {
      const timestamp = await verifyCosignature(text, sig, witness);
      valid.push({ name: witness.name, keyId: witness.keyId, timestamp });
    } catch (err) {
      if (!(err instanceof VerifyError) || err.code === "crypto") throw err;
      invalid.push({ name: witness.name, keyId: witness.keyId, reason: err.message });
    }
  }
  return { valid, invalid };
}

async function parseWitnesses(text) {
  if (!text) return [];
  let items;
  try {
    items = JSON.parse(text);
  } catch {
    throw new VerifyError("the page's data-witnesses is not JSON");
  }
  if (!Array.isArray(items)) throw new VerifyError("the page's data-witnesses must be a list");
  const out = [];
  for (const item of items) {
    try {
      const parsed = await parseWitnessVkey(item && item.vkey);
      if (!out.some((w) => w.keyId === parsed.keyId)) out.push(parsed);
    } catch (err) {
      if (!(err instanceof VerifyError) || err.code === "crypto") throw err;
      // a witness key the page lists but that does not parse is not counted
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// RFC 9162 Merkle proofs (sizes and indexes as BigInt inside)

function toIndex(value, what) {
  if (typeof value === "bigint" && value >= 0n) return value;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  throw new VerifyError(`${what}: expected a non-negative integer, found ${show(value)}`);
}

function requireHash(value, what) {
  if (!isBytes(value) || value.length !== HASH_SIZE) {
    const found = isBytes(value) ? `${value.length} bytes` : typeof value;
    throw new VerifyError(`${what}: expected a ${HASH_SIZE}-byte hash, found ${found}`);
  }
  return value;
}

function requireProof(proof) {
  if (!Array.isArray(proof)) throw new VerifyError("proof: expected a list of hashes");
  return proof;
}

/** RFC 9162 leaf hash: SHA-256(0x00 || leaf). */
export async function leafHash(leaf) {
  if (!isBytes(leaf)) throw new VerifyError("expected the leaf as bytes");
  return sha256(concat(Uint8Array.of(0x00), leaf));
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

/**
 * RFC 9162 §2.1.3.2: `leaf` (a leaf hash) is leaf `index` of the tree of
 * `size` whose root is `root`.  Resolves, or throws VerifyError.
 */
export async function verifyInclusion(leaf, index, size, proof, root) {
  index = toIndex(index, "index");
  size = toIndex(size, "size");
  if (index >= size) {
    throw new VerifyError(`inclusion: expected index < size, found index=${index}, size=${size}`);
  }
  let r = requireHash(leaf, "leaf hash");
  requireHash(root, "root");
  requireProof(proof);
  let fn = index;
  let sn = size - 1n;
  for (let i = 0; i < proof.length; i++) {
    const p = requireHash(proof[i], `inclusion: proof[${i}]`);
    if (sn === 0n) {
      throw new VerifyError(`inclusion: proof too long: expected ${i} hashes, found ${proof.length}`);
    }
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) {
    throw new VerifyError(
      `inclusion: proof too short for index ${index} in size ${size}: found ${proof.length} hashes`,
    );
  }
  if (!equalBytes(r, root)) {
    throw new VerifyError(
      `inclusion: computed root ${hex(r)} does not match the checkpoint's root ${hex(root)}`,
    );
  }
}

/**
 * RFC 9162 §2.1.4.2: the tree (size1, root1) is a prefix of (size2, root2).
 * As ledger/merkle.py: size1 MUST be >= 1; equal sizes need an empty proof and
 * equal roots (compared as bytes, any length); otherwise 32-byte hashes only.
 */
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  size1 = toIndex(size1, "size1");
  size2 = toIndex(size2, "size2");
  if (size1 > size2) {
    throw new VerifyError(`consistency: expected size1 <= size2, found size1=${size1}, size2=${size2}`);
  }
  if (size1 === 0n) throw new VerifyError(`consistency: expected size1 >= 1, found 0 (size2=${size2})`);
  requireProof(proof);
  if (size1 === size2) {
    if (proof.length !== 0) {
      throw new VerifyError(
        `consistency: sizes are equal (${size1}), expected an empty proof, found ${proof.length} hashes`,
      );
    }
    if (!isBytes(root1) || !isBytes(root2)) throw new VerifyError("consistency: expected byte roots");
    if (!equalBytes(root1, root2)) {
      throw new VerifyError(`consistency: sizes are equal (${size1}) but the roots differ`);
    }
    return;
  }
  requireHash(root1, "root1");
  requireHash(root2, "root2");
  if (proof.length === 0) {
    throw new VerifyError(
      `consistency: expected a non-empty proof from size ${size1} to ${size2}, found none`,
    );
  }
  proof.forEach((p, i) => requireHash(p, `consistency: proof[${i}]`));
  let fn = size1 - 1n;
  let sn = size2 - 1n;
  let fr;
  let sr;
  let rest;
  if ((size1 & (size1 - 1n)) === 0n) {
    fr = sr = root1; // size1 is a power of two: root1 is the implicit first proof item
    rest = 0;
  } else {
    fr = sr = proof[0];
    rest = 1;
  }
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  for (let i = rest; i < proof.length; i++) {
    const c = proof[i];
    if (sn === 0n) {
      throw new VerifyError(`consistency: proof too long: expected ${i} hashes, found ${proof.length}`);
    }
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) {
    throw new VerifyError(
      `consistency: proof too short from size ${size1} to ${size2}: found ${proof.length} hashes`,
    );
  }
  if (!equalBytes(fr, root1)) {
    throw new VerifyError(`consistency: computed old root ${hex(fr)} does not match root1 ${hex(root1)}`);
  }
  if (!equalBytes(sr, root2)) {
    throw new VerifyError(`consistency: computed new root ${hex(sr)} does not match root2 ${hex(root2)}`);
  }
}

// ---------------------------------------------------------------------------
// what the page shows against what the leaf holds

const MISSING = Symbol("missing");

function canonicalJson(value) {
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

/**
 * The value at a dotted path in an entry (the leaf JSON).  Paths start at the
 * entry (`seq`, `time`, `statement.kind`, `signatures.0.key`); a first segment
 * that is not an entry member is looked up in the statement, so `body.gtin`,
 * `kind` and `created` name the statement's members.
 */
export function lookup(entry, path) {
  const parts = String(path).split(".");
  let at = entry;
  if (entry && typeof entry === "object" && !Object.hasOwn(entry, parts[0]) && entry.statement) {
    at = entry.statement;
  }
  for (const part of parts) {
    if (Array.isArray(at) && /^(?:0|[1-9][0-9]*)$/.test(part) && Number(part) < at.length) {
      at = at[Number(part)];
    } else if (at !== null && typeof at === "object" && !Array.isArray(at) && Object.hasOwn(at, part)) {
      at = at[part];
    } else {
      return MISSING;
    }
  }
  return at;
}

/** Throw unless every `path: value` in `expected` is what the entry holds (deep JSON equality). */
export function checkExpected(entry, expected, seq) {
  if (expected === null || typeof expected !== "object" || Array.isArray(expected)) {
    throw new VerifyError(`entry ${seq}: expected data-expect to map paths to values`);
  }
  for (const [path, want] of Object.entries(expected)) {
    const got = lookup(entry, path);
    if (got === MISSING) {
      throw new VerifyError(
        `entry ${seq}: the page shows ${path} = ${show(canonicalJson(want))}, but the logged entry has no ${path}`,
        "mismatch",
      );
    }
    if (canonicalJson(got) !== canonicalJson(want)) {
      throw new VerifyError(
        `entry ${seq}: the page shows ${path} = ${show(canonicalJson(want))}, but the logged entry has ${show(canonicalJson(got))}`,
        "mismatch",
      );
    }
  }
}

/** Decode a leaf as the entry it encodes; its seq MUST be `seq`. */
export function parseLeaf(leaf, seq) {
  let entry;
  try {
    entry = JSON.parse(decodeUtf8(leaf, `entry ${seq}'s leaf`));
  } catch (err) {
    throw err instanceof VerifyError ? err : new VerifyError(`entry ${seq}: the leaf is not JSON`);
  }
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw new VerifyError(`entry ${seq}: expected the leaf to be a JSON object`);
  }
  if (entry.seq !== Number(seq)) {
    throw new VerifyError(`entry ${seq}: the leaf says seq ${show(entry.seq)}`);
  }
  return entry;
}

// ---------------------------------------------------------------------------
// fetching

async function get(url, signal, as) {
  let response;
  try {
    response = await fetch(url, {
      signal,
      cache: "no-store",
      credentials: "same-origin",
      headers: { Accept: as === "json" ? "application/json" : "text/plain" },
    });
  } catch (err) {
    if (signal && signal.aborted) throw new VerifyError(`GET ${url}: gave up waiting`, "timeout");
    throw new VerifyError(`GET ${url}: ${err && err.message}`, "network");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) detail = body.error.message;
    } catch {
      // not JSON: keep the status text
    }
    const err = new VerifyError(`GET ${url}: HTTP ${response.status}: ${detail}`, "network");
    err.status = response.status;
    throw err;
  }
  if (as === "json") {
    try {
      return await response.json();
    } catch {
      throw new VerifyError(`GET ${url}: the answer is not JSON`);
    }
  }
  return new Uint8Array(await response.arrayBuffer());
}

// ---------------------------------------------------------------------------
// the light witness: remember the newest verified checkpoint per origin

function openStorage() {
  try {
    const storage = globalThis.localStorage;
    if (!storage) return null;
    storage.getItem(STORAGE_PREFIX); // throws where storage is blocked
    return storage;
  } catch {
    return null;
  }
}

function recall(storage, origin) {
  if (!storage) return null;
  try {
    const saved = JSON.parse(storage.getItem(STORAGE_PREFIX + origin));
    if (!saved || typeof saved.size !== "string" || !/^[1-9][0-9]{0,19}$/.test(saved.size)) return null;
    const root = b64decode(saved.root, "remembered root");
    if (root.length !== HASH_SIZE) return null;
    return { size: BigInt(saved.size), root };
  } catch {
    return null; // nothing saved, or something unreadable: start afresh
  }
}

function remember(storage, cp) {
  if (!storage) return;
  try {
    storage.setItem(
      STORAGE_PREFIX + cp.origin,
      JSON.stringify({ size: cp.size.toString(), root: b64encode(cp.root) }),
    );
  } catch {
    // quota or private mode: the witness is best effort, verification is not
  }
}

function proofHashes(body, what) {
  if (!body || !Array.isArray(body.hashes)) throw new VerifyError(`${what}: expected a list of hashes`);
  return body.hashes.map((h, i) => b64decode(h, `${what} hash ${i}`));
}

/**
 * Check `cp` against the checkpoint this browser verified last for the origin.
 * Resolves {since} (the remembered size, now proven consistent), {lagging}
 * (the remembered size is larger and the server cannot prove it: a replica
 * behind) or null (nothing remembered).  Throws code "history" when the two
 * cannot both be true.
 */
export async function witness(cp, { storage = openStorage(), base = "", signal } = {}) {
  const old = recall(storage, cp.origin);
  let outcome = null;
  const history = (detail) => new VerifyError(detail, "history");
  if (old && cp.size > 0n) {
    if (old.size === cp.size) {
      if (!equalBytes(old.root, cp.root)) {
        throw history(`the log signed two different roots for size ${cp.size}`);
      }
      outcome = { since: old.size };
    } else if (old.size < cp.size) {
      const url = `${base}/api/v1/proofs/consistency?from=${old.size}&to=${cp.size}`;
      const body = await get(url, signal, "json");
      try {
        await verifyConsistency(old.size, cp.size, proofHashes(body, "consistency proof"), old.root, cp.root);
      } catch (err) {
        throw history(`size ${old.size} → ${cp.size}: ${err.message}`);
      }
      outcome = { since: old.size };
    } else {
      let body = null;
      try {
        body = await get(`${base}/api/v1/proofs/consistency?from=${cp.size}&to=${old.size}`, signal, "json");
      } catch (err) {
        if (err.code === "timeout") throw err;
        outcome = { lagging: old.size }; // this server does not have the newer tree yet
      }
      if (body !== null) {
        try {
          await verifyConsistency(cp.size, old.size, proofHashes(body, "consistency proof"), cp.root, old.root);
        } catch (err) {
          throw history(`size ${cp.size} → ${old.size}: ${err.message}`);
        }
        outcome = { since: old.size };
      }
    }
  }
  if (cp.size > 0n && (!old || cp.size > old.size)) remember(storage, cp);
  return outcome;
}

// ---------------------------------------------------------------------------
// one panel

function parseSeqs(text) {
  const seqs = [];
  for (const part of String(text || "").split(",")) {
    const item = part.trim();
    if (!item) continue;
    if (!/^(?:0|[1-9][0-9]{0,15})$/.test(item) || !Number.isSafeInteger(Number(item))) {
      throw new VerifyError(`expected entry numbers in data-seqs, found ${show(item)}`);
    }
    if (!seqs.includes(Number(item))) seqs.push(Number(item));
  }
  return seqs;
}

async function checkEntry(seq, cp, { base, signal }) {
  if (BigInt(seq) >= cp.size) {
    throw new VerifyError(`entry ${seq} is not in the signed log of size ${cp.size}`);
  }
  const body = await get(`${base}/api/v1/entries/${seq}?size=${cp.size}`, signal, "json");
  const leaf = b64decode(body && body.leaf, `entry ${seq}'s leaf`);
  const hash = await leafHash(leaf);
  if (typeof body.leaf_hash === "string" && body.leaf_hash !== hex(hash)) {
    throw new VerifyError(
      `entry ${seq}: the leaf hash sent (${show(body.leaf_hash, 16)}) is not the hash of the leaf bytes (${hex(hash)})`,
    );
  }
  const proof = body.inclusion_proof;
  if (!proof || typeof proof !== "object") throw new VerifyError(`entry ${seq}: no inclusion proof`);
  if (proof.leaf_index !== seq) {
    throw new VerifyError(`entry ${seq}: the proof is for leaf ${show(proof.leaf_index)}`);
  }
  if (!Number.isSafeInteger(proof.tree_size) || BigInt(proof.tree_size) !== cp.size) {
    throw new VerifyError(
      `entry ${seq}: the proof is for size ${show(proof.tree_size)}, the checkpoint's is ${cp.size}`,
    );
  }
  try {
    await verifyInclusion(hash, seq, cp.size, proofHashes(proof, "inclusion proof"), cp.root);
  } catch (err) {
    throw new VerifyError(`entry ${seq}: ${err.message}`, err.code);
  }
  return { seq, leafHash: hash, entry: parseLeaf(leaf, seq) };
}

async function mapLimited(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function checkpointTime(cp, { base, signal }) {
  try {
    const body = await get(`${base}/api/v1/checkpoints?before=${cp.size + 1n}&limit=1`, signal, "json");
    const [item] = (body && body.checkpoints) || [];
    // Only the server's word on when it signed; shown only for the very note we verified.
    if (item && item.note === cp.note && typeof item.created === "string") return item.created;
  } catch {
    // optional
  }
  return null;
}

/** Everything one panel asks for; resolves the findings or throws VerifyError. */
export async function checkPanel(el, { storage = openStorage(), signal } = {}) {
  const data = el.dataset;
  const base = data.base || "";
  const key = await parseVkey(data.vkey || "");
  const seqs = parseSeqs(data.seqs);
  let expect = {};
  if (data.expect) {
    try {
      expect = JSON.parse(data.expect);
    } catch {
      throw new VerifyError("the page's data-expect is not JSON");
    }
    if (expect === null || typeof expect !== "object" || Array.isArray(expect)) {
      throw new VerifyError("the page's data-expect must map entry numbers to fields");
    }
    for (const seq of parseSeqs(Object.keys(expect).join(","))) if (!seqs.includes(seq)) seqs.push(seq);
  }
  let prefix = null;
  let prefixSeq = null;
  if (data.hashPrefix) {
    prefix = data.hashPrefix.toLowerCase();
    if (!/^[0-9a-f]{1,64}$/.test(prefix)) {
      throw new VerifyError(`the label's code ${show(data.hashPrefix)} is not a hex hash prefix`, "label");
    }
    const given = parseSeqs(data.hashSeq || "");
    if (given.length > 1 || (given.length === 0 && seqs.length !== 1)) {
      throw new VerifyError("the page names no single entry (data-hash-seq) for the label's code");
    }
    prefixSeq = given.length ? given[0] : seqs[0];
    if (!seqs.includes(prefixSeq)) seqs.push(prefixSeq);
  }
  if (seqs.length === 0) throw new VerifyError("the page names no entries to verify (data-seqs)");

  const witnesses = await parseWitnesses(data.witnesses);
  // The page may name the checkpoint to verify against (the newest witnessed one that
  // covers its entries); it is checked exactly like the one /log/checkpoint serves.
  const note = data.checkpoint ? data.checkpoint : await get(`${base}/log/checkpoint`, signal, "text");
  const cp = await verifyCheckpoint(note, key);
  const cosigned = await checkCosignatures(cp.text, cp.cosignatures, witnesses);
  const seen = await witness(cp, { storage, base, signal });
  const timePromise = checkpointTime(cp, { base, signal });
  const entries = await mapLimited(seqs, ENTRY_CONCURRENCY, (seq) => checkEntry(seq, cp, { base, signal }));
  for (const found of entries) {
    const want = expect[String(found.seq)];
    if (want !== undefined) checkExpected(found.entry, want, found.seq);
    if (found.seq === prefixSeq && !hex(found.leafHash).startsWith(prefix)) {
      throw new VerifyError(
        `the label's code ${prefix} is not the start of entry ${found.seq}'s leaf hash ${hex(found.leafHash)}`,
        "label",
      );
    }
  }
  return {
    checkpoint: cp,
    entries,
    witness: seen,
    prefix,
    time: await timePromise,
    witnesses: { known: witnesses.length, valid: cosigned.valid, invalid: cosigned.invalid },
  };
}

function fill(template, values) {
  return String(template || "").replace(/\{(\w+)\}/g, (all, name) =>
    Object.hasOwn(values, name) ? String(values[name]) : all,
  );
}

function formatTime(text) {
  const when = new Date(text);
  if (Number.isNaN(when.getTime())) return text;
  try {
    return when.toLocaleString(document.documentElement.lang || undefined);
  } catch {
    return text;
  }
}

function render(el, status, lines) {
  const result = el.querySelector("[data-verify-result]");
  if (result) {
    const headline = result.querySelector("[data-verify-headline]");
    const detail = result.querySelector("[data-verify-detail]");
    if (headline) headline.textContent = lines[0] || "";
    if (detail) {
      detail.replaceChildren(
        ...lines.slice(1).filter(Boolean).map((line) => {
          const p = document.createElement("p");
          if (typeof line === "string") {
            p.textContent = line;
          } else {
            p.textContent = line.text;
            if (line.className) p.className = line.className;
          }
          return p;
        }),
      );
    }
    result.hidden = false;
  }
  el.dataset.verifyStatus = status;
}

/** The panel's lines about witnesses: only verified cosignatures count. */
function witnessLines(data, found) {
  if (!found || found.known === 0) return []; // the page lists no witnesses: say nothing
  const lines = [];
  const names = found.valid.map((w) => w.name).join(", ");
  if (found.valid.length === 1) {
    lines.push({ text: fill(data.msgWitnessedOne, { n: 1, names }), className: "verify-witnessed" });
  } else if (found.valid.length > 1) {
    lines.push({
      text: fill(data.msgWitnessedMany, { n: found.valid.length, names }),
      className: "verify-witnessed",
    });
  } else {
    lines.push({ text: data.msgNotWitnessed || "", className: "verify-not-witnessed muted" });
  }
  for (const bad of found.invalid) {
    lines.push({
      text: fill(data.msgWitnessBad, { name: bad.keyId, reason: bad.reason }),
      className: "verify-witness-bad warning-banner",
    });
  }
  return lines;
}

const REASON_MESSAGES = {
  history: "msgReasonHistory",
  timeout: "msgReasonTimeout",
  network: "msgReasonNetwork",
  crypto: "msgReasonCrypto",
  signature: "msgReasonSignature",
  mismatch: "msgReasonMismatch",
  label: "msgReasonLabel",
};

/**
 * Verify one `[data-verify-panel]` element and show the outcome on it
 * (`data-verify-status` = verified | failed, `data-verify-reason` on failure).
 * Resolves the findings, or null when it failed; never rejects.
 */
export async function verifyPanel(el, { timeoutMs, storage } = {}) {
  const data = el.dataset;
  const limit = timeoutMs ?? (Number(data.verifyTimeout) || DEFAULT_TIMEOUT_MS);
  const controller = typeof AbortController === "function" ? new AbortController() : null;
  const signal = controller ? controller.signal : undefined;
  el.dataset.verifyStatus = "pending";
  delete el.dataset.verifyReason;
  delete el.dataset.verifyError;
  delete el.dataset.witnessed;
  render(el, "pending", [data.msgChecking || "…"]);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      if (controller) controller.abort();
      reject(new VerifyError(`no answer within ${Math.round(limit / 1000)} s`, "timeout"));
    }, limit);
  });
  try {
    const work = checkPanel(el, { storage: storage === undefined ? openStorage() : storage, signal });
    const found = await Promise.race([work, timeout]);
    const cp = found.checkpoint;
    el.dataset.verifySize = cp.size.toString();
    el.dataset.verifyRoot = b64encode(cp.root);
    el.dataset.verifySigner = cp.signer.keyId;
    el.dataset.verifyBackend = await ed25519Backend();
    const values = {
      size: cp.size.toString(),
      signer: cp.signer.keyId,
      seqs: found.entries.map((e) => e.seq).join(", "),
    };
    const lines = [data.msgVerified, fill(data.msgVerifiedDetail, values)];
    if (found.time) lines.push(fill(data.msgTime, { time: formatTime(found.time) }));
    if (found.witness && found.witness.since !== undefined) {
      lines.push(fill(data.msgWitness, { old: found.witness.since.toString() }));
    }
    if (found.prefix) lines.push(fill(data.msgLabel, { prefix: found.prefix }));
    lines.push(...witnessLines(data, found.witnesses));
    el.dataset.witnessed = String(found.witnesses.valid.length);
    el.dataset.witnessedBy = found.witnesses.valid.map((w) => w.keyId).join(" ");
    render(el, "verified", lines);
    return found;
  } catch (err) {
    const error = err instanceof VerifyError ? err : new VerifyError(String((err && err.message) || err));
    const worded = data[REASON_MESSAGES[error.code]];
    const reason = worded ? `${worded} (${error.message})` : error.message;
    el.dataset.verifyReason = error.message;
    el.dataset.verifyError = error.code;
    render(el, "failed", [data.msgFailed || "NOT VERIFIED", fill(data.msgFailedDetail || "{reason}", { reason })]);
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** Verify every panel under `root` not yet started; resolves when all are done. */
export function verifyAll(root = document) {
  const panels = Array.from(root.querySelectorAll("[data-verify-panel]")).filter(
    (el) => el.dataset.verifyStarted === undefined,
  );
  for (const el of panels) el.dataset.verifyStarted = "";
  return Promise.all(panels.map((el) => verifyPanel(el)));
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => verifyAll(), { once: true });
  } else {
    verifyAll();
  }
}
