// The release server for the JavaScript tests (tests/browser, tests/node): started on a free
// port with a fresh data directory, stopped with SIGTERM (it writes its nonce file and
// index snapshots there) before that directory is removed.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/// Starts `bin serve` with the key pairs `keys` ("id:secret,..."); resolves to
/// { base: "http://127.0.0.1:PORT", stop() }.
export function startServer(bin, keys, extraArgs = []) {
  const dataDir = mkdtempSync(join(tmpdir(), "imgsearch-js-test-data-"));
  const server = spawn(
    bin,
    ["--inference-workers", "1", "serve", "--listen", "127.0.0.1:0", "--data", dataDir, ...extraArgs],
    { env: { ...process.env, IMGSEARCH_ACCESS_KEYS: keys }, stdio: ["ignore", "ignore", "pipe"] },
  );
  const stop = async () => {
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((ok) => server.once("exit", ok));
      server.kill("SIGTERM");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  return new Promise((ok, fail) => {
    let log = "";
    let base;
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${log}`)), 60_000);
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const m = /imgsearch listening on (http:\/\/\S+) /.exec(log);
      if (m && !base) {
        clearTimeout(timer);
        base = m[1];
        ok({ base, stop });
      }
    });
    server.on("exit", (code) => fail(new Error(`server exited (${code}):\n${log}`)));
  });
}
