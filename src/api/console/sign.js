// imgsearch console: V3 request signing (ACS3-HMAC-SHA256, spec 3.2) in the browser.
// WebCrypto does the hashing where the page is a secure context (https, localhost,
// 127.0.0.1); elsewhere (plain http on a LAN address) `crypto.subtle` does not exist and a
// small SHA-256/HMAC in JavaScript takes over. Both give identical results (the browser
// test checks this).

const enc = new TextEncoder();

export const API_VERSION = "2020-03-20";

/** Lower-case hex of bytes. */
export function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- SHA-256 and HMAC-SHA256 in JavaScript (FIPS 180-4, RFC 2104) ----
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of a Uint8Array, in JavaScript. */
export function sha256Js(data) {
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const bitLen = data.length * 8;
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i] + w[i]) >>> 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0;
      d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  h.forEach((x, i) => ov.setUint32(i * 4, x));
  return out;
}

/** HMAC-SHA256 in JavaScript. */
export function hmacSha256Js(key, message) {
  let k = key.length > 64 ? sha256Js(key) : key;
  const block = new Uint8Array(64);
  block.set(k);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256Js(inner), 64);
  return sha256Js(outer);
}

const subtle = globalThis.crypto && globalThis.crypto.subtle;

/** Hex SHA-256 (WebCrypto when available). */
export async function sha256Hex(bytes, { forceJs = false } = {}) {
  if (subtle && !forceJs) return hex(await subtle.digest("SHA-256", bytes));
  return hex(sha256Js(bytes));
}

/** Hex HMAC-SHA256 with a text key (WebCrypto when available). */
export async function hmacSha256Hex(keyText, messageText, { forceJs = false } = {}) {
  const key = enc.encode(keyText);
  const msg = enc.encode(messageText);
  if (subtle && !forceJs) {
    const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return hex(await subtle.sign("HMAC", k, msg));
  }
  return hex(hmacSha256Js(key, msg));
}

/** 32 random hex characters (crypto.getRandomValues works in any context). */
export function nonce() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return hex(b);
}

/** `application/x-www-form-urlencoded` body of [name, value] pairs. */
export function formEncode(params) {
  return params
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join("&");
}

/**
 * Signs a POST to `/` with a form body. Signed headers: the five x-acs-* headers the server
 * requires; `host` and `content-type` are left out because the browser sets or may alter them.
 * Returns the headers to send.
 */
export async function signV3({ accessKeyId, secret, action, body, date = new Date(), forceJs = false }) {
  const bodyHash = await sha256Hex(enc.encode(body), { forceJs });
  const acs = {
    "x-acs-action": action,
    "x-acs-content-sha256": bodyHash,
    "x-acs-date": date.toISOString().replace(/\.\d+Z$/, "Z"),
    "x-acs-signature-nonce": nonce(),
    "x-acs-version": API_VERSION,
  };
  const signed = Object.keys(acs).sort();
  const canonical =
    "POST\n/\n\n" +
    signed.map((h) => `${h}:${String(acs[h]).trim()}\n`).join("") +
    "\n" +
    signed.join(";") +
    "\n" +
    bodyHash;
  const stringToSign = "ACS3-HMAC-SHA256\n" + (await sha256Hex(enc.encode(canonical), { forceJs }));
  const signature = await hmacSha256Hex(secret, stringToSign, { forceJs });
  return {
    ...acs,
    authorization: `ACS3-HMAC-SHA256 Credential=${accessKeyId},SignedHeaders=${signed.join(";")},Signature=${signature}`,
    "content-type": "application/x-www-form-urlencoded",
  };
}
