// Starts and stops the openspine binary for the Node interop suite, the way
// tests/interop/conftest.py does for the Python one, and makes the raw HTTP calls the suite
// needs outside the client (ping, the sandbox's DELETE /admin/reset).
//
//   OPENSPINE_BIN   path to the openspine binary
//   OPENSPINE_MTLS  "1": mutual TLS, with a CA, server and client certificate made by
//                   `openspine dev-certs`; otherwise plain http://127.0.0.1:<port>
//   MESH_URL        without OPENSPINE_BIN: the base URL of a server that is already running
//                   (plain HTTP, with the sandbox's /admin/reset), e.g. the NHS mesh-sandbox,
//                   to check the tests themselves

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const STARTUP_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
// The client certificate's subject CN, in the form API.md 2.8 gives.
export const CLIENT_CN = "x26abc1.x26.api.mesh-client.nhs.uk";

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tail(file, limit = 6000) {
  try {
    const text = readFileSync(file, "utf8");
    return text.length <= limit ? text : "...\n" + text.slice(-limit);
  } catch (err) {
    return `<could not read ${file}: ${err.message}>`;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One raw request, outside the client, on a connection of its own (keepAlive off), so these
 * calls never touch the connections the client under test is using.
 * Resolves {status, headers, body: Buffer}.
 */
export function rawRequest(url, { method = "GET", headers = {}, body, tls = {}, timeoutMs = 10_000 } = {}) {
  const target = new URL(url);
  const mod = target.protocol === "https:" ? https : http;
  const agent = new mod.Agent({ keepAlive: false, ...tls });
  return new Promise((resolve, reject) => {
    const req = mod.request(target, { method, headers, agent, timeout: timeoutMs }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

async function resetServer(baseUrl, tls) {
  const res = await rawRequest(`${baseUrl}/admin/reset`, { method: "DELETE", tls });
  if (res.status < 200 || res.status >= 300) {
    throw new Error(`DELETE ${baseUrl}/admin/reset answered ${res.status}: ${res.body.toString("utf8").slice(0, 500)}`);
  }
}

/** A server the suite did not start (MESH_URL): plain HTTP, never stopped. */
class ExternalServer {
  constructor(baseUrl) {
    this.baseUrl = baseUrl;
    this.tls = {};
    this.mtls = false;
  }

  async reset() {
    await resetServer(this.baseUrl, this.tls);
  }

  async stop() {}
}

export class OpenSpine {
  /** Starts the server and waits until GET /messageexchange/_ping answers 200. */
  static async start() {
    const binary = process.env.OPENSPINE_BIN;
    if (!binary && process.env.MESH_URL) {
      return new ExternalServer(process.env.MESH_URL.replace(/\/+$/, ""));
    }
    if (!binary) {
      throw new Error("OPENSPINE_BIN is not set: point it at the openspine binary (target/debug/openspine)");
    }
    const mtls = process.env.OPENSPINE_MTLS === "1";
    const workdir = mkdtempSync(path.join(os.tmpdir(), "openspine-node-interop-"));
    const dataDir = path.join(workdir, "data");
    mkdirSync(dataDir);
    const port = await freePort();
    const argv = [
      "serve",
      "--listen", `127.0.0.1:${port}`,
      "--data-dir", dataDir,
      "--demo",
      "--sandbox",
      // As in the Python suite: the server's own lifecycle timer must not sweep mid-test.
      "--lifecycle-interval-secs", "86400",
    ];
    let baseUrl = `http://127.0.0.1:${port}`;
    let tls = {};
    if (mtls) {
      const certs = path.join(workdir, "certs");
      execFileSync(binary, ["dev-certs", "--out", certs, "--client", CLIENT_CN], { stdio: ["ignore", "ignore", "inherit"] });
      argv.push(
        "--tls-cert", path.join(certs, "server.pem"),
        "--tls-key", path.join(certs, "server-key.pem"),
        "--client-ca", path.join(certs, "ca.pem"),
      );
      baseUrl = `https://localhost:${port}`;
      // Options for an https.Agent: trust the dev CA, present the client certificate.
      tls = {
        ca: readFileSync(path.join(certs, "ca.pem")),
        cert: readFileSync(path.join(certs, `client-${CLIENT_CN}.pem`)),
        key: readFileSync(path.join(certs, `client-${CLIENT_CN}-key.pem`)),
      };
    }
    const server = new OpenSpine(binary, argv, workdir, baseUrl, tls, mtls);
    await server.waitUntilPinging();
    return server;
  }

  constructor(binary, argv, workdir, baseUrl, tls, mtls) {
    this.binary = binary;
    this.argv = argv;
    this.workdir = workdir;
    this.baseUrl = baseUrl;
    this.tls = tls;
    this.mtls = mtls;
    this.stdoutPath = path.join(workdir, "openspine.stdout.log");
    this.stderrPath = path.join(workdir, "openspine.stderr.log");
    const out = openSync(this.stdoutPath, "w");
    const err = openSync(this.stderrPath, "w");
    this.proc = spawn(binary, argv, { stdio: ["ignore", out, err], cwd: workdir });
    closeSync(out);
    closeSync(err);
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => resolve({ code, signal }));
      this.proc.once("error", (error) => resolve({ error }));
    });
    this.exitStatus = null;
    this.exited.then((status) => (this.exitStatus = status));
    // Never leave the server running if the test process dies.
    this.onExit = () => {
      if (this.exitStatus === null) this.proc.kill("SIGKILL");
    };
    process.once("exit", this.onExit);
  }

  fail(why) {
    return new Error(
      `openspine ${why}\ncommand: ${this.binary} ${this.argv.join(" ")}\n` +
        `--- stderr (${this.stderrPath}) ---\n${tail(this.stderrPath)}\n` +
        `--- stdout (${this.stdoutPath}) ---\n${tail(this.stdoutPath, 2000)}`,
    );
  }

  async waitUntilPinging() {
    const pingUrl = `${this.baseUrl}/messageexchange/_ping`;
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let last = "no attempt made";
    while (Date.now() < deadline) {
      await sleep(200);
      if (this.exitStatus !== null) {
        throw this.fail(`exited (${JSON.stringify(this.exitStatus)}) before ${pingUrl} answered 200`);
      }
      try {
        const res = await rawRequest(pingUrl, { tls: this.tls, timeoutMs: 2000 });
        if (res.status === 200) return;
        last = `HTTP ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`;
      } catch (err) {
        last = String(err);
      }
    }
    await this.stop();
    throw this.fail(`did not answer 200 on ${pingUrl} within ${STARTUP_TIMEOUT_MS / 1000} s (last: ${last})`);
  }

  /** DELETE /admin/reset (API.md 3.16): every mailbox empty again. */
  async reset() {
    await resetServer(this.baseUrl, this.tls);
  }

  /** SIGTERM, then SIGKILL after 10 s; removes the temporary directory. */
  async stop() {
    if (this.exitStatus === null) {
      this.proc.kill("SIGTERM");
      let timer;
      const timeout = new Promise((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS, null)));
      const stopped = await Promise.race([this.exited, timeout]);
      clearTimeout(timer); // a pending timer would keep the test process alive
      if (stopped === null) {
        this.proc.kill("SIGKILL");
        await this.exited;
      }
    }
    process.removeListener("exit", this.onExit);
    if (process.env.KEEP_SERVER_LOGS !== "1") {
      rmSync(this.workdir, { recursive: true, force: true });
    }
  }
}
