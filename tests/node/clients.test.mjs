// Compatibility with clients we did not write, in a second ecosystem: Alibaba Cloud's
// official Node.js clients, pinned in package-lock.json, drive every action of the
// 2020-03-20 API, tenant isolation and the error rows against the real release server:
// - `@alicloud/pop-core` RPCClient (V1 HMAC-SHA1 signing, POST form bodies);
// - `@alicloud/openapi-client` (Tea for Node, ACS3-HMAC-SHA256 V3 signing), called
//   generically with `callApi`, as the generated SDKs of other products do.
// Images are served to the server's ImageUrl fetcher by a local HTTP server (samples from
// ../shared/datasets/imagenet-samples, plus bad ones made here).
// Run: node --test clients.test.mjs (scripts/test.sh runs it).
//
// Env: IMGSEARCH_BIN (default target/release/imgsearch).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { deflateSync, crc32 } from "node:zlib";
import { startServer } from "../server.mjs";

const require = createRequire(import.meta.url);
const RPCClient = require("@alicloud/pop-core");
const OpenApi = require("@alicloud/openapi-client");
const { RuntimeOptions } = require("@alicloud/tea-util");

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.IMGSEARCH_BIN || join(root, "target/release/imgsearch");
const samples = join(root, "../shared/datasets/imagenet-samples");
const TENANT_A = ["LTAInodetesta", "node-test-secret-a-0123456789"];
const TENANT_B = ["LTAInodetestb", "node-test-secret-b-0123456789"];
const API_VERSION = "2020-03-20";

let srv, endpoint, images, imageBase;

/// A PNG of one colour, w×h, RGB8 (enough for the resolution rows).
function solidPng(w, h, rgb) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array(w).fill(rgb).flat())]);
  const raw = Buffer.concat(Array(h).fill(row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function startImageServer() {
  const files = new Map();
  const names = readdirSync(samples)
    .filter((n) => /\.jpe?g$/i.test(n))
    .sort()
    .slice(0, 6);
  names.forEach((n, i) => files.set(`/good${i}.jpg`, readFileSync(join(samples, n))));
  files.set("/tiny.png", solidPng(100, 100, [200, 40, 40]));
  files.set("/wide.png", solidPng(1100, 300, [40, 200, 40]));
  files.set("/text.jpg", Buffer.from("this is not an image at all\n".repeat(50)));
  // Over AddImage's 2 MB: the size is refused before any decoding.
  files.set("/big.jpg", Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(2_500_000, 7)]));
  const http = createServer((req, res) => {
    const body = files.get(req.url);
    if (!body) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": "image/jpeg", "content-length": body.length }).end(body);
  });
  return new Promise((ok) =>
    http.listen(0, "127.0.0.1", () => {
      imageBase = `http://127.0.0.1:${http.address().port}`;
      images = { http, good: names.map((_, i) => `${imageBase}/good${i}.jpg`) };
      ok();
    }),
  );
}

/// A client of `kind` ("pop-core" or "tea") as one function: (action, params) → the
/// response body, or a thrown error normalised to { code, status, data }.
function client(kind, [accessKeyId, accessKeySecret] = TENANT_A, apiVersion = API_VERSION) {
  if (kind === "pop-core") {
    const c = new RPCClient({ accessKeyId, accessKeySecret, endpoint, apiVersion });
    return async (action, params = {}) => {
      try {
        return await c.request(action, params, { method: "POST", timeout: 60_000 });
      } catch (e) {
        throw { code: e.code, status: e.entry?.response?.statusCode, data: e.data, raw: e };
      }
    };
  }
  const c = new OpenApi.default(new OpenApi.Config({
    accessKeyId, accessKeySecret, endpoint: endpoint.replace(/^http:\/\//, ""), protocol: "http",
  }));
  return async (action, params = {}) => {
    const api = new OpenApi.Params({
      action, version: apiVersion, protocol: "HTTP", pathname: "/", method: "POST",
      authType: "AK", style: "RPC", reqBodyType: "formData", bodyType: "json",
    });
    const body = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, String(v)]));
    try {
      const r = await c.callApi(api, new OpenApi.OpenApiRequest({ body }), new RuntimeOptions({}));
      return r.body;
    } catch (e) {
      throw { code: e.code, status: e.data?.statusCode, data: e.data, raw: e };
    }
  };
}

/// Calls and expects the API error `code` with HTTP `status`; returns the error body.
async function expectError(call, action, params, status, code) {
  let result;
  try {
    result = await call(action, params);
  } catch (e) {
    assert.equal(e.code, code, `${action}: ${e.raw?.message}`);
    assert.equal(e.status, status, `${action}: ${e.raw?.message}`);
    assert.match(e.data.RequestId, /^[0-9A-F-]{36}$/);
    assert.ok(e.data.Message.length > 10, "the message says what to do");
    return e.data;
  }
  assert.fail(`${action}: want HTTP ${status} ${code}, got success ${JSON.stringify(result)}`);
}

before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: run cargo build --release first`);
  await startImageServer();
  srv = await startServer(bin, [TENANT_A, TENANT_B].map((t) => t.join(":")).join(","), ["--allow-private-urls"]);
  endpoint = srv.base;
});

after(async () => {
  images?.http.close();
  await srv?.stop();
});

for (const kind of ["pop-core", "tea"]) {
  const db = (name) => `${name}_${kind.replace("-", "")}`;

  test(`${kind}: every action`, async () => {
    const call = client(kind);
      const created = await call("CreateImageDb", { Name: db("node_db") });
    assert.match(created.RequestId, /^[0-9A-F-]{36}$/);

    const dbs = await call("ListImageDbs");
    assert.ok(dbs.Data.DbList.some((d) => d.Name === db("node_db")), JSON.stringify(dbs));

    const ids = [];
    for (const [i, url] of images.good.entries()) {
      const r = await call("AddImage", {
        DbName: db("node_db"),
        EntityId: `item_${i % 3}`,
        ImageUrl: url,
        ExtraData: `风景 ${i} a*b~c+/=&!'()`,
      });
      assert.match(r.Data.DataId, /^\d{16}$/);
      ids.push(r.Data.DataId);
    }

    const found = await call("SearchImage", { DbName: db("node_db"), ImageUrl: images.good[4], Limit: 3 });
    const top = found.Data.MatchList[0];
    assert.equal(top.DataId, ids[4]);
    assert.equal(top.EntityId, "item_1");
    assert.equal(top.ExtraData, "风景 4 a*b~c+/=&!'()");
    assert.equal(top.ImageUrl, images.good[4]);
    assert.equal(Number(top.Score), 10);
    assert.equal(found.Data.MatchList.length, 3);

    // Paging: Offset/Limit, then the continuation Token, newest first.
    const page1 = await call("ListImages", { DbName: db("node_db"), Limit: 4, Order: "desc" });
    assert.equal(page1.Data.TotalCount, images.good.length);
    assert.deepEqual(page1.Data.ImageList.map((r) => r.DataId), ids.slice(2).reverse());
    const page2 = await call("ListImages", { DbName: db("node_db"), Limit: 4, Order: "desc", Token: page1.Data.Token });
    assert.deepEqual(page2.Data.ImageList.map((r) => r.DataId), ids.slice(0, 2).reverse());
    const offset = await call("ListImages", { DbName: db("node_db"), Offset: 1, Limit: 2, Order: "asc" });
    assert.deepEqual(offset.Data.ImageList.map((r) => r.DataId), ids.slice(1, 3));
    const newest = await call("ListImages", { DbName: db("node_db"), Offset: 1, Limit: 2 }); // default desc
    assert.deepEqual(newest.Data.ImageList.map((r) => r.DataId), [ids[4], ids[3]]);
    const prefixed = await call("ListImages", { DbName: db("node_db"), EntityIdPrefix: "item_2" });
    assert.deepEqual(prefixed.Data.ImageList.map((r) => r.EntityId), ["item_2", "item_2"]);

    await call("DeleteImage", { DbName: db("node_db"), EntityId: "item_1" });
    const after = await call("ListImages", { DbName: db("node_db"), Limit: 100 });
    assert.equal(after.Data.TotalCount, images.good.length - 2);
    assert.ok(!after.Data.ImageList.some((r) => r.EntityId === "item_1"));
    const again = await call("SearchImage", { DbName: db("node_db"), ImageUrl: images.good[4], Limit: 10 });
    assert.ok(!again.Data.MatchList.some((m) => m.EntityId === "item_1"), "a deleted image is not found");

    await call("DeleteImageDb", { Name: db("node_db") });
    assert.ok(!(await call("ListImageDbs")).Data.DbList.some((d) => d.Name === db("node_db")));
  });

  test(`${kind}: tenants see only their own databases`, async () => {
    const a = client(kind, TENANT_A);
    const b = client(kind, TENANT_B);
    await a("CreateImageDb", { Name: db("private_db") });
    await a("AddImage", { DbName: db("private_db"), EntityId: "e", ImageUrl: images.good[0] });
    assert.ok(!(await b("ListImageDbs")).Data.DbList.some((d) => d.Name === db("private_db")));
    await expectError(b, "SearchImage", { DbName: db("private_db"), ImageUrl: images.good[0], Limit: 1 }, 400, "InvalidParameter");
    await b("CreateImageDb", { Name: db("private_db") }); // the same name is B's own
    assert.equal((await b("ListImages", { DbName: db("private_db") })).Data.TotalCount, 0);
    assert.equal((await a("ListImages", { DbName: db("private_db") })).Data.TotalCount, 1);
  });

  test(`${kind}: error rows`, async () => {
    const call = client(kind);
      await call("CreateImageDb", { Name: db("err_db") });
    // The gateway's checks.
    await expectError(client(kind, ["LTAInosuchkey", "whatever-secret-0123"]), "ListImageDbs", {}, 404, "InvalidAccessKeyId.NotFound");
    await expectError(client(kind, [TENANT_A[0], "a-wrong-secret-0123456789"]), "ListImageDbs", {}, 400, "SignatureDoesNotMatch");
    await expectError(client(kind, TENANT_A, "2019-01-01"), "ListImageDbs", {}, 400, "InvalidVersion");
    await expectError(call, "NoSuchAction", {}, 404, "InvalidAction.NotFound");
    // Business parameters.
    await expectError(call, "CreateImageDb", { Name: "Bad-Name" }, 400, "InvalidParameter");
    await expectError(call, "CreateImageDb", { Name: db("err_db") }, 400, "InvalidParameter");
    await expectError(call, "AddImage", { DbName: db("err_db"), ImageUrl: images.good[0] }, 400, "InvalidParameter");
    await expectError(call, "AddImage", { DbName: "no_such_db", EntityId: "e", ImageUrl: images.good[0] }, 400, "InvalidParameter");
    await expectError(call, "SearchImage", { DbName: db("err_db"), ImageUrl: images.good[0], Limit: 0 }, 400, "InvalidParameter");
    await expectError(call, "ListImages", { DbName: db("err_db"), Token: "not-a-token" }, 400, "InvalidParameter");
    // Images.
    const add = (url) => ({ DbName: db("err_db"), EntityId: "e", ImageUrl: url });
    await expectError(call, "AddImage", add(`${imageBase}/missing.jpg`), 400, "InvalidImage.Download");
    await expectError(call, "AddImage", add(`${imageBase}/text.jpg`), 400, "InvalidImage.Format");
    await expectError(call, "AddImage", add(`${imageBase}/tiny.png`), 400, "InvalidImage.Resolution");
    await expectError(call, "AddImage", add(`${imageBase}/wide.png`), 400, "InvalidImage.Resolution");
    await expectError(call, "AddImage", add(`${imageBase}/big.jpg`), 400, "InvalidImage.Size");
    await expectError(call, "SearchImage", { DbName: db("err_db"), ImageUrl: `${imageBase}/text.jpg`, Limit: 1 }, 400, "InvalidImage.Format");
    // Nothing of the refused adds was stored.
    assert.equal((await call("ListImages", { DbName: db("err_db") })).Data.TotalCount, 0);
  });
}
