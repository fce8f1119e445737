// Times the web console against a running server holding a large database
// (scripts/bench-scale.sh): sign in, open the database, until the first page's thumbnails
// are all drawn; then `Next` page by page (continuation Token); then the Duplicates tab
// until the whole database is reviewed, and once more. Debian's chromium driven by
// playwright-core from tests/browser/node_modules. Prints one JSON object.
//
// Usage: node scripts/console_load.mjs BASE_URL KEY_ID SECRET DB [PAGES]
import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, keyId, secret, db, pagesArg] = process.argv.slice(2);
const pages = Number(pagesArg || 10);
const profile = mkdtempSync(join(tmpdir(), "imgsearch-console-load-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  viewport: { width: 1280, height: 860 },
});
const page = context.pages()[0] || (await context.newPage());
const allDrawn = () =>
  page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll("#image-grid img.thumb")];
    return imgs.length > 0 && imgs.every((i) => i.src.startsWith("data:image/jpeg") && i.complete && i.naturalWidth > 0);
  }, null, { timeout: 120_000, polling: 10 });
try {
  let t = performance.now();
  await page.goto(`${base}/console`);
  await page.locator("#signin-view").waitFor();
  const shellMs = performance.now() - t;
  await page.fill("#akid", keyId);
  await page.fill("#secret", secret);
  t = performance.now();
  await page.click("#signin-submit");
  await page.locator(`button.db[data-db="${db}"]`).waitFor({ timeout: 120_000 });
  const signInMs = performance.now() - t;
  t = performance.now();
  await page.click(`button.db[data-db="${db}"]`);
  await page.waitForFunction(() => /of \d/.test(document.getElementById("page-info").textContent), null, { timeout: 120_000, polling: 10 });
  await allDrawn();
  const firstPageMs = performance.now() - t;
  const info = await page.textContent("#page-info");
  const tiles = await page.locator("#image-grid .tile").count();
  const nextMs = [];
  for (let i = 0; i < pages; i++) {
    const before = await page.textContent("#page-info");
    t = performance.now();
    await page.click("#next-page");
    await page.waitForFunction((b) => document.getElementById("page-info").textContent !== b, before, { timeout: 120_000, polling: 10 });
    await allDrawn();
    nextMs.push(performance.now() - t);
  }
  nextMs.sort((a, b) => a - b);
  // Duplicates tab: ListDuplicates polled until Complete (the whole database searched on
  // the server), then once more with every image already searched.
  const dupsDone = () => page.waitForFunction(
    () => /among [\d,]+ images/.test(document.getElementById("dups-progress").textContent),
    null, { timeout: 3_600_000, polling: 50 });
  t = performance.now();
  await page.click("#tab-dups");
  await dupsDone();
  const dupsFullMs = performance.now() - t;
  const dupsSummary = await page.textContent("#dups-progress");
  await page.evaluate(() => (document.getElementById("dups-progress").textContent = ""));
  t = performance.now();
  await page.click("#dups-scan");
  await dupsDone();
  const dupsAgainMs = performance.now() - t;
  const r = (x) => Math.round(x);
  console.log(JSON.stringify({
    page_info: info, tiles_per_page: tiles,
    console_shell_ms: r(shellMs), sign_in_and_db_list_ms: r(signInMs),
    first_page_ms: r(firstPageMs), next_page_p50_ms: r(nextMs[Math.floor(nextMs.length / 2)]),
    next_page_max_ms: r(nextMs[nextMs.length - 1]), pages_timed: nextMs.length,
    duplicates_review_ms: r(dupsFullMs), duplicates_again_ms: r(dupsAgainMs), duplicates: dupsSummary,
  }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
