"""Helpers for the SDK integration tests: the server process, both official SDK clients
behind one interface, a hand-written V1 signer for requests the SDKs cannot produce, the
local image HTTP server and the test images.

Everything talks to 127.0.0.1 only. Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance

API_VERSION = "2020-03-20"
REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY = REPO_ROOT / "target" / "release" / "imgsearch"
SAMPLES_DIR = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-samples"

# API limits (spec 4): bytes are MiB as the server counts them.
ADD_MAX_BYTES = 2 * 1024 * 1024
SEARCH_MAX_BYTES = 3 * 1024 * 1024

STYLES = ("tea", "core")

# Every RequestId any helper saw, success or error (checked for uniqueness at the end).
SEEN_REQUEST_IDS: list[str] = []
_SEEN_LOCK = threading.Lock()


def _record_request_id(rid):
    assert isinstance(rid, str) and rid, f"response without a RequestId: {rid!r}"
    with _SEEN_LOCK:
        SEEN_REQUEST_IDS.append(rid)


# ---------------------------------------------------------------------------------------
# Tenants and the server process
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    key_id: str
    secret: str


TENANT_A = Tenant("AKIDtenantA0001", "secretA-0123456789abcdef")
TENANT_B = Tenant("AKIDtenantB0002", "secretB-fedcba9876543210")
TENANTS = (TENANT_A, TENANT_B)

# The whole suite against the PostgreSQL store: with this set to a server's URL, every server
# the suite starts gets `--store` on it, one store (schema) per data directory, so that a
# server restarted on the same data directory finds its images again.
PG_URL_ENV = "IMGSEARCH_SDK_PG_URL"


def pg_store_url(server_url: str, data_dir: Path) -> str:
    schema = "sdk_" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}schema={schema}"


_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class ServerProcess:
    """`imgsearch serve` as a child process with its stderr drained into memory."""

    def __init__(self, data_dir: Path, *, allow_private: bool = True, extra_args=(),
                 tenants=TENANTS, start_timeout: float = 60.0, argv=None, env_extra=None):
        """`argv` replaces the whole command line (e.g. a packaged unit's ExecStart);
        `env_extra` adds environment variables."""
        if argv is None and not BINARY.is_file():
            raise RuntimeError(f"{BINARY} is missing: run `cargo build --release` first "
                               "(scripts/test.sh does)")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [str(BINARY), "serve", "--listen", "127.0.0.1:0", "--data", str(self.data_dir)]
        if allow_private:
            args.append("--allow-private-urls")
        args.extend(extra_args)
        pg_url = os.environ.get(PG_URL_ENV)
        if pg_url and "--store" not in args:
            args.extend(["--store", pg_store_url(pg_url, self.data_dir)])
        if argv is not None:
            args = list(argv)
        env = dict(os.environ)
        env.update(env_extra or {})
        env["IMGSEARCH_ACCESS_KEYS"] = ",".join(f"{t.key_id}:{t.secret}" for t in tenants)
        env.setdefault("RUST_BACKTRACE", "1")
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._port_found = threading.Event()
        self.port: int | None = None
        self.proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._port_found.wait(start_timeout) or self.port is None:
            rc = self.proc.poll()
            self.kill()
            raise RuntimeError(
                f"server did not print its 'listening' line within {start_timeout:.0f} s "
                f"(exit status {rc}); stderr:\n{self.stderr()}")

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lines_lock:
                self._lines.append(line)
            if self.port is None:
                m = _LISTENING.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._port_found.set()
        self._port_found.set()  # EOF: wake the waiter, which then sees no port

    def stderr(self) -> str:
        with self._lines_lock:
            return "\n".join(self._lines[-200:])

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait (bounded); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server ignored SIGTERM for {timeout} s; stderr:\n{self.stderr()}")
        self._reader.join(5)
        return rc

    def kill(self):
        """SIGKILL (no chance to clean up) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(5)

    def client(self, style: str, tenant: Tenant = TENANT_A, **kw) -> "ApiClient":
        return ApiClient(style, self.port, tenant, **kw)


# ---------------------------------------------------------------------------------------
# One interface over both SDKs
# ---------------------------------------------------------------------------------------


class ApiCallError(Exception):
    """An error answer, whichever SDK got it."""

    def __init__(self, status, code, message, request_id, style):
        super().__init__(f"[{style}] HTTP {status} {code}: {message} (RequestId {request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.style = style


class ApiClient:
    """The seven actions through one of the official SDKs, unchanged, pointed at the server.

    `style="tea"`: alibabacloud-imgsearch20200320 (V3 signature, typed models; the body is
    read back through the SDK's own `to_map()`, so a field the SDK cannot map is lost, as a
    real user would lose it). `style="core"`: aliyun-python-sdk-core + aliyun-python-sdk-
    imgsearch (V1 signature, JSON parsed from the raw body the SDK returns).
    Every method returns the response body as a dict and raises ApiCallError on an error.
    """

    def __init__(self, style: str, port: int, tenant: Tenant = TENANT_A, *,
                 secret: str | None = None, key_id: str | None = None, read_timeout_s: int = 120):
        assert style in STYLES, style
        self.style = style
        self.port = port
        ak = key_id or tenant.key_id
        sk = secret or tenant.secret
        if style == "tea":
            from alibabacloud_imgsearch20200320.client import Client
            from alibabacloud_tea_openapi.models import Config

            self._tea = Client(Config(access_key_id=ak, access_key_secret=sk,
                                      endpoint=f"127.0.0.1:{port}", protocol="http",
                                      read_timeout=read_timeout_s * 1000, connect_timeout=5000))
        else:
            from aliyunsdkcore.client import AcsClient

            self._acs = AcsClient(ak, sk, "cn-shanghai", port=port, auto_retry=False,
                                  timeout=read_timeout_s, connect_timeout=5, pool_size=16)

    def __repr__(self):
        return f"ApiClient({self.style})"

    # -- plumbing ------------------------------------------------------------------------

    def _tea_call(self, method: str, request=None) -> dict:
        from Tea.exceptions import TeaException

        fn = getattr(self._tea, method)
        try:
            resp = fn() if request is None else fn(request)
        except TeaException as e:
            data = e.data if isinstance(e.data, dict) else {}
            status = getattr(e, "statusCode", None) or data.get("statusCode")
            rid = data.get("RequestId")
            _record_request_id(rid)
            raise ApiCallError(status, e.code, data.get("Message", e.message), rid, "tea") from None
        assert resp.status_code == 200, resp.status_code
        body = resp.body.to_map()
        _record_request_id(body.get("RequestId"))
        return body

    def _core_request(self, cls_name: str, **params):
        import importlib

        mod = importlib.import_module(f"aliyunsdkimgsearch.request.v20200320.{cls_name}")
        req = getattr(mod, cls_name)()
        req.set_endpoint("127.0.0.1")
        req.set_protocol_type("http")
        for k, v in params.items():
            if v is not None:
                getattr(req, f"set_{k}")(v)
        return req

    def _core_call(self, cls_name: str, **params) -> dict:
        from aliyunsdkcore.acs_exception.exceptions import ServerException

        req = self._core_request(cls_name, **params)
        try:
            raw = self._acs.do_action_with_exception(req)
        except ServerException as e:
            _record_request_id(e.get_request_id())
            raise ApiCallError(e.get_http_status(), e.get_error_code(), e.get_error_msg(),
                               e.get_request_id(), "core") from None
        body = json.loads(raw)
        _record_request_id(body.get("RequestId"))
        return body

    def core_raw(self, cls_name: str, fmt: str = "XML", **params):
        """Core SDK only: the raw answer of `cls_name` in `fmt` → (status, headers, body)."""
        assert self.style == "core"
        req = self._core_request(cls_name, **params)
        req.set_accept_format(fmt)
        status, headers, body, _exc = self._acs._implementation_of_do_action(req)
        return status, headers, body

    # -- the actions ---------------------------------------------------------------------

    def create_image_db(self, name):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("create_image_db", m.CreateImageDbRequest(name=name))
        return self._core_call("CreateImageDbRequest", Name=name)

    def list_image_dbs(self):
        if self.style == "tea":
            return self._tea_call("list_image_dbs")
        return self._core_call("ListImageDbsRequest")

    def db_names(self) -> list[str]:
        return [d["Name"] for d in (self.list_image_dbs().get("Data", {}).get("DbList") or [])]

    def delete_image_db(self, name):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("delete_image_db", m.DeleteImageDbRequest(name=name))
        return self._core_call("DeleteImageDbRequest", Name=name)

    def add_image(self, db, entity_id, image_url, extra_data=""):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("add_image", m.AddImageRequest(
                db_name=db, entity_id=entity_id, extra_data=extra_data, image_url=image_url))
        return self._core_call("AddImageRequest", DbName=db, EntityId=entity_id,
                               ExtraData=extra_data, ImageUrl=image_url)

    def add(self, db, entity_id, image_url, extra_data="") -> str:
        """AddImage → its DataId."""
        return self.add_image(db, entity_id, image_url, extra_data)["Data"]["DataId"]

    def search_image(self, db, image_url, limit=10):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("search_image", m.SearchImageRequest(
                db_name=db, image_url=image_url, limit=limit))
        return self._core_call("SearchImageRequest", DbName=db, ImageUrl=image_url, Limit=limit)

    def matches(self, db, image_url, limit=10) -> list[dict]:
        return self.search_image(db, image_url, limit)["Data"].get("MatchList") or []

    def list_images(self, db, *, offset=None, limit=None, token=None, order=None,
                    entity_id_prefix=None):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("list_images", m.ListImagesRequest(
                db_name=db, offset=offset, limit=limit, token=token, order=order,
                entity_id_prefix=entity_id_prefix))
        return self._core_call("ListImagesRequest", DbName=db, Offset=offset, Limit=limit,
                               Token=token, Order=order, EntityIdPrefix=entity_id_prefix)

    def list_all(self, db, *, limit=100, order=None, entity_id_prefix=None,
                 max_pages=1000) -> list[dict]:
        """Every record of `db`, paging by Token (bounded number of pages)."""
        out, token = [], None
        for _ in range(max_pages):
            data = self.list_images(db, limit=limit, token=token, order=order,
                                    entity_id_prefix=entity_id_prefix)["Data"]
            out.extend(data.get("ImageList") or [])
            token = data.get("Token")
            if not token:
                return out
        raise AssertionError(f"paging {db} did not end within {max_pages} pages")

    def delete_image(self, db, entity_id):
        if self.style == "tea":
            from alibabacloud_imgsearch20200320 import models as m
            return self._tea_call("delete_image", m.DeleteImageRequest(
                db_name=db, entity_id=entity_id))
        return self._core_call("DeleteImageRequest", DbName=db, EntityId=entity_id)


def expect_error(fn, *args, status: int, code: str, **kw) -> ApiCallError:
    """Calls fn and asserts it fails with exactly this HTTP status and Code."""
    try:
        result = fn(*args, **kw)
    except ApiCallError as e:
        assert (e.status, e.code) == (status, code), f"want HTTP {status} {code}, got {e}"
        assert e.request_id, f"error without RequestId: {e}"
        return e
    raise AssertionError(f"want HTTP {status} {code}, got success: {result!r}")


def unique_name(prefix="db") -> str:
    """A database name valid under the spec rules (lower-case, digits, _; 2-64)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------
# Hand-signed V1 requests (spec 3.1)
# ---------------------------------------------------------------------------------------


def pct(s: str) -> str:
    """RFC 3986 percent-encoding, UTF-8; only A-Z a-z 0-9 - _ . ~ stay."""
    return urllib.parse.quote(str(s), safe="-_.~")


def v1_string_to_sign(method: str, params: dict) -> str:
    pairs = sorted((pct(k), pct(v)) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{k}={v}" for k, v in pairs)
    return f"{method}&{pct('/')}&{pct(canonical)}"


def v1_signature(method: str, params: dict, secret: str) -> str:
    sts = v1_string_to_sign(method, params)
    mac = hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def utc_timestamp(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


@dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)

    def error(self) -> tuple[int, str]:
        """(status, Code) of a JSON error answer; records its RequestId."""
        doc = self.json()
        _record_request_id(doc.get("RequestId"))
        assert set(doc) == {"RequestId", "HostId", "Code", "Message"}, doc
        assert doc["HostId"] and doc["Message"], doc
        return self.status, doc.get("Code")


@dataclass
class SignedRequest:
    """A V1 request built once; `send()` may be called more than once (replay)."""

    method: str
    query: dict
    body: dict | bytes | None
    string_to_sign: str
    extra_headers: dict = field(default_factory=dict)

    def send(self, port: int, timeout: float = 60.0) -> RawResponse:
        target = "/"
        if self.query:
            target += "?" + "&".join(f"{pct(k)}={pct(v)}" for k, v in self.query.items())
        headers = {"Host": f"127.0.0.1:{port}", **self.extra_headers}
        data = None
        if self.body is not None:
            data = self.body if isinstance(self.body, bytes) else \
                "&".join(f"{pct(k)}={pct(v)}" for k, v in self.body.items()).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(self.method, target, body=data, headers=headers)
            r = conn.getresponse()
            return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()


def v1_request(action: str, business: dict | None = None, *, tenant: Tenant = TENANT_A,
               secret: str | None = None, key_id: str | None = None, method: str = "POST",
               fmt: str | None = "JSON", version: str = API_VERSION,
               timestamp: str | None = None, nonce: str | None = None, drop=(),
               raw_body: bytes | None = None) -> SignedRequest:
    """Builds a V1 request the way aliyun-python-sdk-core does (common parameters in the
    query, business parameters in the form body for POST; everything in the query for GET),
    signed per spec 3.1 with `secret` (default: the tenant's). `drop` removes common
    parameters before signing (and "Signature" leaves the signature out)."""
    common = {
        "Action": action,
        "Version": version,
        "AccessKeyId": key_id or tenant.key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": timestamp or utc_timestamp(),
        "RegionId": "cn-shanghai",
    }
    if fmt is not None:
        common["Format"] = fmt
    for k in drop:
        common.pop(k, None)
    business = dict(business or {})
    business = {k: str(v) for k, v in business.items()}
    signed = {**common, **business}
    sts = v1_string_to_sign(method, signed)
    sig = v1_signature(method, signed, secret or tenant.secret)
    if "Signature" not in drop:
        common["Signature"] = sig
    if method == "POST":
        return SignedRequest(method, common, raw_body if raw_body is not None else business, sts)
    return SignedRequest(method, {**common, **business}, None, sts)


# ---------------------------------------------------------------------------------------
# Test images and the local image HTTP server
# ---------------------------------------------------------------------------------------


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", **kw)
    return buf.getvalue()


def _noise(side_w: int, side_h: int, seed: int) -> Image.Image:
    rnd = random.Random(seed)
    return Image.frombytes("RGB", (side_w, side_h), rnd.randbytes(side_w * side_h * 3))


class ImageSet:
    """Writes the test images into `root` and remembers their names.

    good: `n` photos from the ImageNet samples (classes spread over the 1,000), resized so
    the longest side is 480 px, as JPEG; `png`: one of them as PNG. Bad ones: see below.
    """

    def __init__(self, root: Path, n: int = 48):
        if not SAMPLES_DIR.is_dir():
            raise RuntimeError(f"test images missing: {SAMPLES_DIR} (expected ../shared/"
                               "datasets/imagenet-samples next to the repository)")
        samples = sorted(p for p in SAMPLES_DIR.iterdir()
                         if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if len(samples) < n:
            raise RuntimeError(f"{SAMPLES_DIR} holds {len(samples)} images, need {n}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        step = len(samples) // n
        self.good: list[str] = []
        self._sources: dict[str, Image.Image] = {}
        for i, src in enumerate(samples[::step][:n]):
            with Image.open(src) as im:
                im = im.convert("RGB")
                im.thumbnail((480, 480), Image.Resampling.LANCZOS)
                # thumbnail keeps the aspect ratio; lift a very flat side over the minimum
                if min(im.size) <= 128:
                    im = im.resize((max(im.size[0], 200), max(im.size[1], 200)))
                name = f"good_{i:03d}.jpg"
                self.write(name, _jpeg_bytes(im, quality=90))
                self.good.append(name)
                if i == 0:
                    buf = io.BytesIO()
                    im.save(buf, "PNG")
                    self.write("good_000.png", buf.getvalue())
        self.png = "good_000.png"
        self.spaced = self.write("with space.jpg", (self.root / self.good[-1]).read_bytes())

        first = Image.open(self.root / self.good[0]).convert("RGB")
        # Bad formats
        buf = io.BytesIO()
        first.save(buf, "GIF")
        self.gif = self.write("bad.gif", buf.getvalue())
        full = (self.root / self.good[1]).read_bytes()
        self.truncated = self.write("truncated.jpg", full[: len(full) // 3])
        self.text_as_jpg = self.write("text.jpg", b"this is not an image at all\n" * 50)
        # Bad resolutions (and the accepted boundaries next to them)
        buf = io.BytesIO()
        first.resize((100, 100)).save(buf, "PNG")
        self.tiny_png = self.write("tiny_100x100.png", buf.getvalue())
        self.too_wide = self.write("wide_1100x300.jpg", _jpeg_bytes(first.resize((1100, 300))))
        self.side_128 = self.write("edge_128x400.jpg", _jpeg_bytes(first.resize((128, 400))))
        self.side_1024 = self.write("edge_1024x400.jpg", _jpeg_bytes(first.resize((1024, 400))))
        self.side_129 = self.write("ok_129x400.jpg", _jpeg_bytes(first.resize((129, 400))))
        self.side_1023 = self.write("ok_1023x400.jpg", _jpeg_bytes(first.resize((1023, 400))))
        # Sizes: valid JPEGs with a resolution inside the limits. Random noise at quality
        # 100 without chroma subsampling hardly compresses.
        mid = _jpeg_bytes(_noise(800, 800, 1), quality=100, subsampling=0)
        if not ADD_MAX_BYTES < len(mid) < SEARCH_MAX_BYTES:
            raise RuntimeError(f"2-3 MB test JPEG came out at {len(mid)} bytes")
        self.between_2_and_3mb = self.write("noise_2to3mb.jpg", mid)
        big = _jpeg_bytes(_noise(1000, 1000, 2), quality=100, subsampling=0)
        if not len(big) > SEARCH_MAX_BYTES:
            raise RuntimeError(f">3 MB test JPEG came out at {len(big)} bytes")
        self.over_3mb = self.write("noise_over3mb.jpg", big)
        first.close()

    def write(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return name

    def path(self, name: str) -> Path:
        return self.root / name


def edited_copy(images, name: str, out: str) -> str:
    """A crop of 60% of the area, off centre, recoloured, as a JPEG quality 40."""
    with Image.open(images.path(name)) as im:
        im = im.convert("RGB")
        w, h = im.size
        im = im.crop((int(w * 0.05), int(h * 0.15), int(w * 0.83), int(h * 0.92)))
        im = ImageEnhance.Color(im).enhance(0.3)
        im = ImageEnhance.Brightness(im).enhance(1.25)
        if min(im.size) <= 128:
            im = im.resize((max(im.size[0], 200), max(im.size[1], 200)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=40)
    return images.write(out, buf.getvalue())


class ImageServer:
    """http.server in a thread on 127.0.0.1:<free port>.

    /img/NAME            the file NAME from the image directory (404 when absent)
    /chunked/NAME        the same file with chunked transfer encoding (no Content-Length)
    /redirect/N/NAME     302 → /redirect/N-1/NAME, …, /img/NAME (a chain of N redirects)
    Counts requests per path (to prove the server never fetched a refused URL).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                with owner._lock:
                    owner.hits[path] = owner.hits.get(path, 0) + 1
                m = re.fullmatch(r"/redirect/(\d+)/(.+)", path)
                if m:
                    n, name = int(m.group(1)), m.group(2)
                    loc = f"/img/{name}" if n <= 1 else f"/redirect/{n - 1}/{name}"
                    self._send(302, b"", [("Location", loc)])
                    return
                chunked = path.startswith("/chunked/")
                if chunked:
                    path = "/img/" + path[len("/chunked/"):]
                m = re.fullmatch(r"/img/([A-Za-z0-9_. \-]+)", path)
                f = owner.root / m.group(1) if m else None
                if f is None or not f.is_file():
                    self._send(404, b"not found", [("Content-Type", "text/plain")])
                    return
                data = f.read_bytes()
                ctype = {".png": "image/png", ".gif": "image/gif"}.get(f.suffix, "image/jpeg")
                if chunked:
                    self._send_chunked(data, ctype)
                else:
                    self._send(200, data, [("Content-Type", ctype)])

            def _send_chunked(self, data, ctype):
                """No Content-Length: the size is only known by reading the body."""
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(0, len(data), 64 * 1024):
                        piece = data[i:i + 64 * 1024]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading at its size cap

            def _send(self, status, body, headers):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/img/{name}"

    def chunked_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/chunked/{name}"

    def redirect_url(self, hops: int, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/redirect/{hops}/{name}"

    def hit_count(self, path: str) -> int:
        with self._lock:
            return self.hits.get(path, 0)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------
# Hand-signed V3 requests (spec 3.2), the way the Tea SDK sends them
# ---------------------------------------------------------------------------------------


def v3_signature(method: str, query: dict, headers: dict, body: bytes, secret: str) -> tuple[str, str]:
    """→ (SignedHeaders, hex signature) over every header given (names lower-cased)."""
    h = {k.lower(): str(v).strip() for k, v in headers.items()}
    signed = sorted(h)
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted((pct(k), pct(v)) for k, v in query.items()))
    canonical = "\n".join([
        method, "/", canonical_query,
        "".join(f"{k}:{h[k]}\n" for k in signed),
        ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ])
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return ";".join(signed), hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest()


def v3_request(action: str, business: dict | None = None, *, tenant: Tenant = TENANT_A,
               secret: str | None = None, date: str | None = None, nonce: str | None = None,
               version: str = API_VERSION, port: int = 0,
               body_override: bytes | None = None) -> SignedRequest:
    """A POST like the Tea SDK's: no query, business parameters in the form body, action
    and version in headers, `Authorization: ACS3-HMAC-SHA256 ...`. `body_override` sends
    another body than the one hashed and signed."""
    body = "&".join(f"{pct(k)}={pct(v)}" for k, v in (business or {}).items()).encode()
    headers = {
        "host": f"127.0.0.1:{port}",
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
        "accept": "application/json",
    }
    signed, sig = v3_signature("POST", {}, headers, body, secret or tenant.secret)
    headers["authorization"] = (f"ACS3-HMAC-SHA256 Credential={tenant.key_id},"
                                f"SignedHeaders={signed},Signature={sig}")
    headers.pop("host")
    return SignedRequest("POST", {}, body_override if body_override is not None else body,
                         "", extra_headers=headers)
