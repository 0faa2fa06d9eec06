/**
 * audit.js — the auditor portal's scripts (web/templates/auditor/).
 *
 * 1. `[data-consistency-panel]`: the browser's own check of "nothing changed
 *    since my last audit".  With nothing but the log's verifier key (data-vkey)
 *    it verifies both checkpoint notes (data-old-note, data-new-note) and the
 *    RFC 9162 consistency proof between them (data-proof: base64 hashes
 *    separated by spaces), using verify.js's exported functions.  Like the
 *    entry panel it sets `data-verify-status` = pending | verified | failed
 *    (and `data-verify-reason` on failure); it MUST NOT leave a panel pending.
 * 2. `[data-job-url]`: polls a verification job's JSON while it runs and moves
 *    its `<progress>` bar; the page works without it (it refreshes itself).
 *
 * Visible words come from data-msg-* attributes the server renders translated;
 * this script fills in numbers and reasons only.  No inline scripts: the CSP
 * allows 'self' only.
 */

import { VerifyError, b64decode, sha256, verifyCheckpoint, verifyConsistency } from "./verify.js";

const TIMEOUT_MS = 15000;
const POLL_MS = 1000;

function fill(template, values) {
  return String(template || "").replace(/\{(\w+)\}/g, (all, name) =>
    Object.hasOwn(values, name) ? String(values[name]) : all,
  );
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// ---------------------------------------------------------------------------
// consistency

/** The proof hashes of data-proof, decoded (canonical base64, or VerifyError). */
export function proofHashes(text) {
  return String(text || "")
    .split(/\s+/)
    .filter(Boolean)
    .map((h, i) => b64decode(h, `consistency proof hash ${i}`));
}

/**
 * Verify that the old checkpoint is a prefix of the new one: both notes signed
 * by `vkey`, then the consistency proof.  Resolves {old, now} or throws VerifyError.
 */
export async function checkConsistency(oldNote, newNote, proofText, vkey) {
  const old = await verifyCheckpoint(oldNote, vkey);
  const now = await verifyCheckpoint(newNote, vkey);
  const proof = proofHashes(proofText);
  if (old.size > now.size) {
    throw new VerifyError(`your checkpoint (size ${old.size}) is larger than the log's (size ${now.size})`);
  }
  if (old.size === 0n) {
    // Every log extends the empty tree; its root must be the hash of nothing.
    if (!sameBytes(old.root, await sha256(new Uint8Array(0)))) {
      throw new VerifyError("the checkpoint for size 0 does not carry the empty tree's root");
    }
  } else {
    await verifyConsistency(old.size, now.size, proof, old.root, now.root);
  }
  return { old, now };
}

function render(el, status, lines) {
  const headline = el.querySelector("[data-verify-headline]");
  const detail = el.querySelector("[data-verify-detail]");
  if (headline) headline.textContent = lines[0] || "";
  if (detail) {
    detail.replaceChildren(
      ...lines
        .slice(1)
        .filter(Boolean)
        .map((line) => {
          const p = document.createElement("p");
          p.textContent = line;
          return p;
        }),
    );
  }
  el.dataset.verifyStatus = status;
}

/** Check one consistency panel and show the outcome on it; never rejects. */
export async function consistencyPanel(el) {
  const data = el.dataset;
  el.dataset.verifyStatus = "pending";
  delete el.dataset.verifyReason;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new VerifyError(`no answer within ${TIMEOUT_MS / 1000} s`, "timeout")),
      TIMEOUT_MS,
    );
  });
  try {
    const work = checkConsistency(data.oldNote || "", data.newNote || "", data.proof, data.vkey || "");
    const { old, now } = await Promise.race([work, timeout]);
    el.dataset.verifyOldSize = old.size.toString();
    el.dataset.verifyNewSize = now.size.toString();
    render(el, "verified", [
      data.msgVerified,
      fill(data.msgVerifiedDetail, { old: old.size.toString(), new: now.size.toString() }),
    ]);
  } catch (err) {
    const reason = err && err.message ? err.message : String(err);
    el.dataset.verifyReason = reason;
    render(el, "failed", [data.msgFailed || "NOT VERIFIED", fill(data.msgFailedDetail || "{reason}", { reason })]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// verification jobs

function showJob(el, job) {
  const bar = el.querySelector("[data-job-progress]");
  const total = Math.max(1, Number(job.total) || 0);
  if (bar) {
    bar.max = total;
    bar.value = job.state === "ok" ? total : Math.min(total, Number(job.done) || 0);
    bar.textContent = `${job.percent}%`;
  }
  el.dataset.jobState = job.state;
  el.classList.remove("running", "ok", "failed", "error");
  el.classList.add(job.state);
  const outcome = el.querySelector("[data-job-outcome]");
  if (outcome) {
    const values = {
      done: job.done,
      total: job.total,
      entries: job.entries ?? "",
      message: job.message ?? "",
    };
    const template = el.dataset[`msg${job.state.charAt(0).toUpperCase()}${job.state.slice(1)}`];
    const strong = document.createElement(job.state === "running" ? "span" : "strong");
    strong.className = job.state === "ok" ? "ok-text" : job.state === "running" ? "" : "bad-text";
    strong.textContent = fill(template, values);
    outcome.replaceChildren(strong);
  }
  const bad = el.querySelector("[data-job-bad-entry]");
  if (bad) {
    const known = Number.isSafeInteger(job.seq);
    bad.hidden = !known;
    if (known) {
      const seq = bad.querySelector("[data-job-seq]");
      const link = bad.querySelector("[data-job-seq-link]");
      if (seq) seq.textContent = String(job.seq);
      if (link) link.href = `/e/${job.seq}`;
    }
  }
  const finished = el.querySelector("[data-job-finished]");
  if (finished && job.finished) finished.textContent = job.finished;
}

/** Poll one job's JSON until it is no longer running. */
export function followJob(el) {
  if (el.dataset.jobState !== "running") return;
  let delay = POLL_MS;
  const tick = async () => {
    try {
      const response = await fetch(el.dataset.jobUrl, {
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const job = await response.json();
      showJob(el, job);
      delay = POLL_MS;
      if (!job.running) return;
    } catch {
      delay = Math.min(delay * 2, 15000); // the server is busy or restarting: back off
    }
    setTimeout(tick, delay);
  };
  setTimeout(tick, POLL_MS / 2);
}

function start() {
  for (const el of document.querySelectorAll("[data-consistency-panel]")) consistencyPanel(el);
  for (const el of document.querySelectorAll("[data-job-url]")) followJob(el);
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start, { once: true });
  } else {
    start();
  }
}
