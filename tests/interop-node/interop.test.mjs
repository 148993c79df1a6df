// Interop suite: the NHS npm client `nhs-mesh-client` (pinned in package.json) against the
// openspine binary. Run with Node's built-in runner:
//
//   OPENSPINE_BIN=../../target/debug/openspine node --test --test-reporter=spec interop.test.mjs
//   OPENSPINE_MTLS=1 OPENSPINE_BIN=... node --test ...     # the same over mutual TLS
//
// Every call to the server goes through the client's own exported functions (handShake,
// sendMessage, sendChunkedMessage, getMessageCount, readMessage, markAsRead); only the server's
// start, ping and the sandbox's DELETE /admin/reset are made outside it (server.mjs).
//
// How the client reaches the server: it hands its `agent` argument to axios as `httpsAgent`
// only. Over plain http:// it therefore uses Node's http.globalAgent, which keeps connections
// alive (Node >= 19). Over TLS the suite passes, per mailbox, an https.Agent with
// keepAlive: true, the dev CA and the client certificate.
//
// Behaviour checked is API.md's (shared/mesh/API.md), cited by section.

import { describe, test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import {
  handShake,
  sendMessage,
  sendChunkedMessage,
  getMessageCount,
  readMessage,
  markAsRead,
} from "nhs-mesh-client";
import { OpenSpine } from "./server.mjs";

const CLIENT_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/nhs-mesh-client/package.json", import.meta.url), "utf8"),
).version;
const SHARED_KEY = process.env.MESH_SHARED_KEY || "TestKey";
const PASSWORD = "password";
const MODE = process.env.OPENSPINE_MTLS === "1" ? "mutual TLS" : "plain HTTP";
const SERVER_LABEL =
  !process.env.OPENSPINE_BIN && process.env.MESH_URL ? process.env.MESH_URL : `openspine (${MODE})`;
const TEST_TIMEOUT_MS = 120_000;
// The client's sendChunkedMessage splits at a fixed 10 MiB (CHUNK_SIZE, not configurable).
const CLIENT_CHUNK_SIZE = 10 * 1024 * 1024;
const BIG_BODY_BYTES = 10 * 1024 * 1024;

let server;
const agents = new Map();

/** The keep-alive agent of a mailbox: one per mailbox, reused by all its calls (TLS only). */
function agentFor(mailboxID) {
  if (!server.mtls) return undefined; // the client ignores it over http: http.globalAgent is used
  if (!agents.has(mailboxID)) {
    agents.set(mailboxID, new https.Agent({ keepAlive: true, ...server.tls }));
  }
  return agents.get(mailboxID);
}

/** The connection arguments every client function takes. */
function mailbox(mailboxID, mailboxPassword = PASSWORD) {
  return { url: server.baseUrl, mailboxID, mailboxPassword, sharedKey: SHARED_KEY, agent: agentFor(mailboxID) };
}

function describeError(err) {
  const res = err && err.response;
  const body = res ? JSON.stringify(res.data)?.slice(0, 300) : undefined;
  return [
    err && err.code ? `code ${err.code}` : null,
    err && err.message ? `message ${JSON.stringify(err.message)}` : String(err),
    res ? `response ${res.status} ${body}` : "no response",
  ]
    .filter(Boolean)
    .join("; ");
}

// handShake, getMessageCount, readMessage and sendChunkedMessage catch axios errors and
// *return* them; sendMessage and markAsRead let them propagate.
function assertNotError(result, what) {
  assert.ok(!(result instanceof Error), `${what} failed: ${describeError(result)}`);
  return result;
}

async function send(from, to, message, options = {}) {
  const response = await sendMessage({
    ...mailbox(from),
    mailboxTarget: to,
    message,
    workFlowId: "TEST_WORKFLOW",
    ...options,
  });
  assert.equal(response.status, 202, "send answers 202 (API.md 3.8)");
  const id = response.data && response.data.message_id;
  assert.equal(typeof id, "string", `v2 send body has message_id: ${JSON.stringify(response.data)}`);
  return id;
}

async function inbox(mailboxID) {
  const response = assertNotError(await getMessageCount(mailbox(mailboxID)), `inbox poll of ${mailboxID}`);
  assert.equal(response.status, 200);
  return response.data;
}

/** Text that is not JSON (axios would parse JSON bodies) and compresses well. */
function csvText(minBytes) {
  const lines = ["nhs_number,sender,seq,value\n"];
  let size = lines[0].length;
  for (let i = 0; size < minBytes; i++) {
    const line = `${9000000000 + i},X26ABC1,${i},${(i * 7919) % 100003}\n`;
    lines.push(line);
    size += line.length;
  }
  return lines.join("");
}

/**
 * Awaits a send the server must refuse; returns the client's error. The refusal's status
 * must reach the client as an HTTP response, not as a broken connection.
 */
async function expectRefusal(sending, status) {
  let outcome;
  try {
    outcome = await sending;
  } catch (err) {
    assert.equal(
      err.response && err.response.status,
      status,
      `the client should see the refusal as HTTP ${status}; it got: ${describeError(err)}`,
    );
    return err;
  }
  assert.fail(`the send should have been refused with ${status}, but it answered ${outcome && outcome.status}`);
}

describe(`nhs-mesh-client ${CLIENT_VERSION} against ${SERVER_LABEL}`, { timeout: 10 * 60_000 }, () => {
  before(async () => {
    server = await OpenSpine.start();
  });

  after(async () => {
    for (const agent of agents.values()) agent.destroy();
    if (server) await server.stop();
  });

  beforeEach(async () => {
    await server.reset();
  });

  test("handshake: 200 with the right password, 403 with a wrong one", { timeout: TEST_TIMEOUT_MS }, async () => {
    const ok = assertNotError(await handShake(mailbox("X26ABC1")), "handshake");
    assert.equal(ok.status, 200, "handshake answers 200 (API.md 3.1)");
    // The client sends mex-clientversion/-osname/-osversion, which API.md 3.1 requires.
    assert.match(String(ok.config.headers["mex-clientversion"]), /^javascript-mesh-client==/);

    const bad = await handShake(mailbox("X26ABC1", "not-the-password"));
    assert.ok(bad instanceof Error, "a wrong password must fail the handshake");
    assert.equal(bad.response && bad.response.status, 403, `403 (API.md 2.5): ${describeError(bad)}`);
  });

  test("send a small message; the recipient reads body and headers", { timeout: TEST_TIMEOUT_MS }, async () => {
    const body = "Hello from nhs-mesh-client\nsecond line, £ and é\n";
    const id = await send("X26ABC1", "X26ABC2", body, { fileName: "hello.txt" });

    const message = assertNotError(await readMessage({ ...mailbox("X26ABC2"), messageID: id }), "read");
    assert.equal(message.status, 200, "a single-chunk message downloads with 200 (API.md 3.4)");
    assert.equal(message.data, body);
    const h = message.headers;
    assert.equal(h["mex-messageid"], id);
    assert.equal(h["mex-from"], "X26ABC1");
    assert.equal(h["mex-to"], "X26ABC2");
    assert.equal(h["mex-workflowid"], "TEST_WORKFLOW");
    assert.equal(h["mex-filename"], "hello.txt");
    assert.equal(h["mex-messagetype"], "DATA");
    assert.equal(h["mex-chunk-range"], "1:1");
  });

  test("gzip-compressed send (compressed: true) reads back intact", { timeout: TEST_TIMEOUT_MS }, async () => {
    // With compressed: true the client sends gzip(JSON.stringify(message)) with
    // Content-Encoding: gzip; axios un-gzips and JSON-parses what it downloads.
    const message = {
      note: "gzip round trip",
      rows: Array.from({ length: 500 }, (_, i) => ({ seq: i, nhs_number: String(9000000000 + i), ok: i % 3 === 0 })),
    };
    const id = await send("X26ABC1", "X26ABC2", message, { compressed: true, fileName: "rows.json.gz" });

    const read = assertNotError(await readMessage({ ...mailbox("X26ABC2"), messageID: id }), "read");
    assert.equal(read.status, 200);
    assert.deepEqual(read.data, message);
    assert.equal(read.headers["mex-filename"], "rows.json.gz");
    // API.md 5.5: a gzip-stored message is served with Content-Encoding: gzip to a client that
    // accepts gzip (axios does), and then Mex-Content-Compressed: Y.
    assert.equal(read.headers["mex-content-compressed"], "Y");
  });

  test("chunked send (sendChunkedMessage, 2 chunks, workflow API-DOCS-TEST) reads back intact", { timeout: TEST_TIMEOUT_MS }, async () => {
    // The client splits at 10 MiB and gzips each chunk separately (API.md 5.4), so just over
    // 10 MiB makes two chunks. Its workflow id is fixed: API-DOCS-TEST (--sandbox does not
    // check workflow permissions, API.md 3.8).
    const text = csvText(CLIENT_CHUNK_SIZE + 512 * 1024);
    const sent = assertNotError(
      await sendChunkedMessage({ ...mailbox("X26ABC1"), mailboxTarget: "X26ABC2", fileContent: Buffer.from(text) }),
      "chunked send",
    );
    assert.equal(sent.status, 202, "every chunk upload answers 202 (API.md 3.8, 3.9)");
    const id = sent.data && sent.data.message_id;
    assert.equal(typeof id, "string", `the first chunk's answer carries message_id: ${JSON.stringify(sent.data)}`);

    const listed = await inbox("X26ABC2");
    assert.deepEqual(listed.messages, [id], "the message is listed once its last chunk is in (API.md 5.4)");

    const read = assertNotError(await readMessage({ ...mailbox("X26ABC2"), messageID: id }), "chunked read");
    // readMessage returns 206 for a chunked message, after fetching every chunk.
    assert.equal(read.status, 206);
    assert.equal(read.data.length, text.length, "reassembled length");
    assert.ok(read.data === text, "reassembled text equals what was sent");
    assert.equal(read.headers["mex-chunk-range"], "2:2", "the last chunk downloaded was 2 of 2");
    assert.equal(read.headers["mex-workflowid"], "API-DOCS-TEST");
    assert.equal(read.headers["mex-filename"], "message.txt.gz");
  });

  test("list inbox: the recipient sees every message, oldest first; others see none", { timeout: TEST_TIMEOUT_MS }, async () => {
    const ids = [];
    for (const n of [1, 2, 3]) ids.push(await send("X26ABC1", "X26ABC2", `message ${n}`));

    const listed = await inbox("X26ABC2");
    assert.deepEqual(listed.messages, ids, "inbox lists the messages oldest first (API.md 3.2)");
    assert.equal(listed.approx_inbox_count, 3);

    const senders = await inbox("X26ABC1");
    assert.deepEqual(senders.messages, []);
    assert.equal(senders.approx_inbox_count, 0);
  });

  test("read: a read leaves the message in the inbox; an unknown id is 404", { timeout: TEST_TIMEOUT_MS }, async () => {
    const id = await send("X26ABC1", "X26ABC2", "read me twice");
    for (const attempt of [1, 2]) {
      const read = assertNotError(await readMessage({ ...mailbox("X26ABC2"), messageID: id }), `read ${attempt}`);
      assert.equal(read.status, 200);
      assert.equal(read.data, "read me twice");
    }
    assert.deepEqual((await inbox("X26ABC2")).messages, [id], "downloading does not acknowledge (API.md 3.7)");

    const missing = await readMessage({ ...mailbox("X26ABC2"), messageID: "20260101000000000000_ABCDEF" });
    assert.ok(missing instanceof Error, "reading an unknown message must fail");
    assert.equal(missing.response && missing.response.status, 404, `404 (API.md 3.4): ${describeError(missing)}`);
  });

  test("acknowledge (markAsRead): the inbox no longer lists the message", { timeout: TEST_TIMEOUT_MS }, async () => {
    const first = await send("X26ABC1", "X26ABC2", "acknowledge me");
    const second = await send("X26ABC1", "X26ABC2", "leave me");
    assertNotError(await readMessage({ ...mailbox("X26ABC2"), messageID: first }), "read");

    // markAsRead PUTs a JSON body {"messageId": …} with Content-Type application/octet-stream.
    const acked = await markAsRead({ ...mailbox("X26ABC2"), message: first });
    assert.equal(acked.status, 200, "acknowledge answers 200 (API.md 3.7)");

    const listed = await inbox("X26ABC2");
    assert.deepEqual(listed.messages, [second]);
    assert.equal(listed.approx_inbox_count, 1);
  });

  // A send the server refuses early, then another call on the same keep-alive agent
  // (http.globalAgent over plain HTTP; the mailbox's https.Agent over TLS). The next call must
  // succeed: a server that drops the connection after answering must say Connection: close,
  // or the agent reuses a dead socket (EPIPE / ECONNRESET).
  const refusals = [
    { what: "unknown recipient, small body", password: PASSWORD, to: "X26ZZZ9", size: 0, status: 417 },
    { what: "wrong password, small body", password: "not-the-password", to: "X26ABC2", size: 0, status: 403 },
    { what: "wrong password, 10 MiB body", password: "not-the-password", to: "X26ABC2", size: BIG_BODY_BYTES, status: 403 },
    { what: "unknown recipient, 10 MiB body", password: PASSWORD, to: "X26ZZZ9", size: BIG_BODY_BYTES, status: 417 },
  ];
  for (const r of refusals) {
    test(`refused send (${r.what}) → ${r.status}, then an inbox poll on the same keep-alive agent succeeds`, { timeout: TEST_TIMEOUT_MS }, async () => {
      if (!server.mtls) {
        assert.equal(http.globalAgent.keepAlive, true, "precondition: Node's http.globalAgent keeps connections alive (Node >= 19)");
      }
      // One successful call first, so the agent holds an idle keep-alive connection.
      await inbox("X26ABC1");

      const body = r.size ? Buffer.alloc(r.size, "x") : "a small message that will be refused";
      await expectRefusal(
        sendMessage({ ...mailbox("X26ABC1", r.password), mailboxTarget: r.to, message: body, workFlowId: "TEST_WORKFLOW" }),
        r.status,
      );

      // The very next call, same mailbox, same agent.
      const after = await getMessageCount(mailbox("X26ABC1"));
      assertNotError(after, `the inbox poll right after the ${r.status} refusal`);
      assert.equal(after.status, 200);
      assert.deepEqual(after.data.messages, [], "nothing was delivered");
    });
  }
});
