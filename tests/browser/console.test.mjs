// End-to-end test of the web console in a real browser: Debian's chromium driven by
// playwright-core (no browser download). Starts the real server binary on a free port with
// a fresh data directory, then: sign in → create a database → add an image (upload) →
// browse (thumbnail) → page by Token → "Similar" (search by a stored image) → search by
// image → delete the entity → add several files at once → delete the database; then the
// Duplicates view: copies made in the browser (canvas re-encodes) are grouped, "not a
// duplicate" splits a group for good, "keep, delete rest" deletes the others.
// Screenshots go to target/browser/ (paths printed). Run: node --test console.test.mjs
//
// Env: IMGSEARCH_BIN (default target/release/imgsearch), CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, existsSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "../server.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.IMGSEARCH_BIN || join(root, "target/release/imgsearch");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const samples = join(root, "../shared/datasets/imagenet-samples");
const image = join(samples, "n01440764_tench.JPEG"); // 500×375
const other = join(samples, "n01443537_goldfish.JPEG"); // 376×263
const third = join(samples, "n01518878_ostrich.JPEG");
const shots = join(root, "target/browser");
const KEY_ID = "LTAIbrowsertest";
const SECRET = "browser-test-secret-0123456789";

let srv, base, context, page, profileDir;

before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: run cargo build --release first`);
  assert.ok(existsSync(browserPath), `${browserPath} is missing: apt-get install chromium`);
  srv = await startServer(bin, `${KEY_ID}:${SECRET}`);
  base = srv.base;
  profileDir = mkdtempSync(join(tmpdir(), "imgsearch-chromium-profile-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: browserPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("dialog", (d) => d.accept());
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await context?.close();
  await srv?.stop();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

test("console: sign in, create db, upload, search, delete", async () => {
  await page.goto(`${base}/console`);
  await page.locator("#signin-view").waitFor();

  // A wrong secret is refused with the server's code, and nothing is stored.
  await page.fill("#akid", KEY_ID);
  await page.fill("#secret", "wrong-secret");
  await page.click("#signin-submit");
  await page.locator("#signin-error").waitFor();
  assert.match(await page.textContent("#signin-error"), /SignatureDoesNotMatch/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  await page.fill("#secret", SECRET);
  await page.click("#signin-submit");
  await page.locator("#app-view").waitFor();
  assert.equal(await page.textContent("#who-key"), KEY_ID);
  // The secret lives in sessionStorage only.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("imgsearch.accessKeySecret")), SECRET);
  assert.equal(await page.evaluate(() => localStorage.length), 0);

  // Create a database.
  await page.fill("#new-db", "browser_db");
  await page.click("#create-db");
  await page.locator('button.db.active[data-db="browser_db"]').waitFor();
  await page.locator("#db-panel").waitFor();

  // Upload (AddImage with ImageContent) two images.
  for (const [file, entity, extra] of [
    [image, "tench", "a fish, uploaded"],
    [other, "goldfish", "another fish"],
  ]) {
    if (!(await page.locator("#add-box").evaluate((d) => d.open))) await page.click("#add-box summary");
    await page.setInputFiles("#add-file", file);
    await page.fill("#add-entity", entity);
    await page.fill("#add-extra", extra);
    await page.click("#add-submit");
    await page.locator(`#image-grid .tile[data-entity="${entity}"]`).waitFor();
  }
  // Thumbnails arrive through the signed GetThumbnail action.
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#image-grid img.thumb")].every((i) => i.src.startsWith("data:image/jpeg") && i.complete && i.naturalWidth > 0),
  );
  assert.match(await page.textContent("#image-count"), /2 images/);

  // Paging by continuation Token, one image per page (`?page_size=1`): newest first, Next
  // and Previous follow the tokens, the count stays right.
  await page.goto(`${base}/console?page_size=1`);
  await page.locator('button.db[data-db="browser_db"]').click();
  await page.waitForFunction(() => document.getElementById("page-info").textContent === "1–1 of 2");
  assert.equal(await page.getAttribute("#image-grid .tile", "data-entity"), "goldfish");
  assert.equal(await page.isDisabled("#prev-page"), true);
  await page.click("#next-page");
  await page.waitForFunction(() => document.getElementById("page-info").textContent === "2–2 of 2");
  assert.equal(await page.getAttribute("#image-grid .tile", "data-entity"), "tench");
  assert.equal(await page.isDisabled("#next-page"), true);
  await page.click("#prev-page");
  await page.waitForFunction(() => document.getElementById("page-info").textContent === "1–1 of 2");
  assert.equal(await page.getAttribute("#image-grid .tile", "data-entity"), "goldfish");
  await page.goto(`${base}/console`);
  await page.locator('button.db[data-db="browser_db"]').click();
  await page.waitForFunction(() => document.querySelectorAll("#image-grid .tile").length === 2);
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#image-grid img.thumb")].every((i) => i.complete && i.naturalWidth > 0),
  );

  // Filter by EntityId prefix.
  await page.fill("#filter", "gold");
  await page.click("#filter-form button");
  await page.waitForFunction(() => document.querySelectorAll("#image-grid .tile").length === 1);
  await page.fill("#filter", "");
  await page.click("#filter-form button");
  await page.waitForFunction(() => document.querySelectorAll("#image-grid .tile").length === 2);
  if (await page.locator("#add-box").evaluate((d) => d.open)) await page.click("#add-box summary"); // tidy screenshot
  await page.evaluate(() => (document.getElementById("toast").hidden = true));
  await page.screenshot({ path: join(shots, "console-images.png"), fullPage: true });

  // "Similar" on a tile searches with the stored image (its DataId, nothing uploaded): it
  // comes first at 10.
  await page.locator('#image-grid .tile[data-entity="goldfish"] .similar').click();
  await page.waitForFunction(() => document.querySelector("#match-grid .tile")?.dataset.entity === "goldfish");
  assert.equal((await page.locator("#match-grid .tile").first().locator(".score").textContent()).trim(), "10.00");
  assert.match(await page.textContent("#drop-text"), /Images like goldfish/);

  // Search by image: the same picture ranks first with score 10.
  await page.click("#tab-search");
  await page.setInputFiles("#search-file", image);
  await page.waitForFunction(() => document.querySelector("#match-grid .tile")?.dataset.entity === "tench");
  const first = page.locator("#match-grid .tile").first();
  assert.equal(await first.getAttribute("data-entity"), "tench");
  assert.equal((await first.locator(".score").textContent()).trim(), "10.00");
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#match-grid img.thumb")].every((i) => i.complete && i.naturalWidth > 0),
  );
  await page.evaluate(() => (document.getElementById("toast").hidden = true));
  const desktop = join(shots, "console-search.png");
  await page.screenshot({ path: desktop, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  const phone = join(shots, "console-search-phone.png");
  await page.screenshot({ path: phone, fullPage: true });
  // Nothing overflows sideways at phone width.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1));
  await page.setViewportSize({ width: 1280, height: 860 });
  console.log(`screenshots: ${join(shots, "console-images.png")} ${desktop} ${phone}`);

  // Delete the entity from the search results, then check the image list.
  await first.locator(".delete-entity").click();
  await page.locator("#toast", { hasText: "Deleted entity tench" }).waitFor();
  await page.click("#tab-images");
  await page.waitForFunction(() => {
    const tiles = [...document.querySelectorAll("#image-grid .tile")];
    return tiles.length === 1 && tiles[0].dataset.entity === "goldfish";
  });

  // Several files at once, EntityId empty: one upload after another with progress, each
  // file's EntityId made from its name; a file that is too small is reported by name, the
  // others still go in.
  const tiny = join(profileDir, "tiny.png");
  writeFileSync(tiny, Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC", "base64"));
  if (!(await page.locator("#add-box").evaluate((d) => d.open))) await page.click("#add-box summary");
  await page.setInputFiles("#add-file", [image, tiny, other]);
  await page.click("#add-submit");
  await page.waitForFunction(() => document.getElementById("add-progress").textContent.startsWith("Added 2 of 3"));
  assert.match(await page.textContent("#add-progress"), /failed: tiny\.png: InvalidImage\.Resolution/);
  await page.locator('#image-grid .tile[data-entity="n01440764_tench"]').waitFor();
  await page.locator('#image-grid .tile[data-entity="n01443537_goldfish"]').waitFor();
  assert.match(await page.textContent("#image-count"), /3 images/);

  // Delete the database.
  await page.click("#delete-db");
  await page.locator('button.db[data-db="browser_db"]').waitFor({ state: "detached" });
  await page.locator("#no-db").waitFor();

  // Sign out clears the secret.
  await page.click("#sign-out");
  await page.locator("#signin-view").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

async function signIn() {
  await page.goto(`${base}/console`);
  if (await page.locator("#signin-view").isVisible()) {
    await page.fill("#akid", KEY_ID);
    await page.fill("#secret", SECRET);
    await page.click("#signin-submit");
  }
  await page.locator("#app-view").waitFor();
}

// A copy of `file` made by the browser: scaled by `scale`, the middle `keep` of it cut out,
// re-encoded as JPEG at `quality` (a re-upload, an edited copy).
async function browserCopy(file, name, { scale = 1, keep = 1, quality = 0.6 }) {
  const b64 = await page.evaluate(async ({ data, scale, keep, quality }) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
    const [sw, sh] = [bmp.width * keep, bmp.height * keep];
    const c = new OffscreenCanvas(Math.round(sw * scale), Math.round(sh * scale));
    c.getContext("2d").drawImage(bmp, (bmp.width - sw) / 2, (bmp.height - sh) / 2, sw, sh, 0, 0, c.width, c.height);
    const blob = await c.convertToBlob({ type: "image/jpeg", quality });
    const buf = new Uint8Array(await blob.arrayBuffer());
    let s = "";
    for (const b of buf) s += String.fromCharCode(b);
    return btoa(s);
  }, { data: readFileSync(file).toString("base64"), scale, keep, quality });
  return { name, mimeType: "image/jpeg", buffer: Buffer.from(b64, "base64") };
}

const progress = (re) => page.waitForFunction(
  (src) => new RegExp(src).test(document.getElementById("dups-progress").textContent), re.source);

test("console: duplicates review", async () => {
  await signIn();
  await page.fill("#new-db", "dups_db");
  await page.click("#create-db");
  await page.locator('button.db.active[data-db="dups_db"]').waitFor();
  const files = [
    { name: "tench.jpg", mimeType: "image/jpeg", buffer: readFileSync(image) },
    await browserCopy(image, "tench_small.jpg", { scale: 0.7 }),
    await browserCopy(image, "tench_crop.jpg", { keep: 0.85, quality: 0.4 }),
    { name: "goldfish.jpg", mimeType: "image/jpeg", buffer: readFileSync(other) },
    await browserCopy(other, "goldfish_small.jpg", { scale: 0.75 }),
    { name: "ostrich.jpg", mimeType: "image/jpeg", buffer: readFileSync(third) },
  ];
  if (!(await page.locator("#add-box").evaluate((d) => d.open))) await page.click("#add-box summary");
  await page.setInputFiles("#add-file", files);
  await page.click("#add-submit");
  await page.waitForFunction(() => document.getElementById("add-progress").textContent.startsWith("Added 6 of 6"));

  // Two groups, oldest first in each, scores to the first at "the same picture" (8+).
  await page.click("#tab-dups");
  await progress(/^2 groups of copies among 6 images/);
  const groups = () => page.evaluate(() => [...document.querySelectorAll("#dups-list .dup-group")]
    .map((g) => [...g.querySelectorAll(".tile")].map((t) => t.dataset.entity)));
  assert.deepEqual(await groups(), [["tench", "tench_small", "tench_crop"], ["goldfish", "goldfish_small"]]);
  for (const s of await page.locator("#dups-list .tile:not(.first) .score").allTextContents()) {
    assert.ok(Number(s) >= 8, `score to the first ${s}`);
  }
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#dups-list img.thumb")].every((i) => i.complete && i.naturalWidth > 0),
  );
  await page.evaluate(() => (document.getElementById("toast").hidden = true));
  const shot = join(shots, "console-duplicates.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // "Not a duplicate": the goldfish group is gone, and stays gone after a reload.
  await page.locator('#dups-list .tile[data-entity="goldfish_small"] .not-dup').click();
  await page.locator("#toast", { hasText: "Marked goldfish_small as not a copy of goldfish" }).waitFor();
  await progress(/^1 group of copies among 6 images/);
  assert.deepEqual(await groups(), [["tench", "tench_small", "tench_crop"]]);

  // Keep the smaller copy, delete the rest of its group (the dialog is accepted).
  await page.locator('#dups-list .tile[data-entity="tench_small"] .keep').click();
  await page.locator("#toast", { hasText: "Kept tench_small; deleted 2 images" }).waitFor();
  await progress(/^No copies among 4 images/);

  await signIn();
  await page.locator('button.db[data-db="dups_db"]').click();
  await page.waitForFunction(() => document.querySelectorAll("#image-grid .tile").length === 4);
  const left = await page.evaluate(() => [...document.querySelectorAll("#image-grid .tile")].map((t) => t.dataset.entity).sort());
  assert.deepEqual(left, ["goldfish", "goldfish_small", "ostrich", "tench_small"]);
  await page.click("#tab-dups");
  await progress(/^No copies among 4 images/);

  await page.click("#delete-db");
  await page.locator('button.db[data-db="dups_db"]').waitFor({ state: "detached" });
});

test("signing: WebCrypto and the JavaScript fallback agree", async () => {
  const same = await page.evaluate(async () => {
    const s = await import("/console/sign.js");
    const enc = new TextEncoder();
    const inputs = ["", "abc", "x".repeat(1000), "风景 a*b~c"];
    for (const t of inputs) {
      if ((await s.sha256Hex(enc.encode(t))) !== (await s.sha256Hex(enc.encode(t), { forceJs: true }))) return `sha256 ${t}`;
      for (const key of ["k", "K".repeat(100)]) {
        if ((await s.hmacSha256Hex(key, t)) !== (await s.hmacSha256Hex(key, t, { forceJs: true }))) return `hmac ${t}`;
      }
    }
    return "ok";
  });
  assert.equal(same, "ok");
});
