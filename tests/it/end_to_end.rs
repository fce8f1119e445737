//! End-to-end: the real `imgsearch serve` on a free port, driven by the real client
//! subcommands (`db`, `add`, `search`, `import`) and by the library client for the
//! ImageContent error cases; then `/metrics`, `/healthz` and `/readyz` are scraped.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use base64::Engine as _;
use imgsearch::remote::client::{Client, ClientError, Endpoint};
use imgsearch::signing::SignatureStyle;

use crate::common::{bin, sample, start_server, Server};

const KEYS: &str = "AKIDone:secret-one-0123456789,AKIDtwo:secret-two-0123456789";

/// A JPEG of `sample` resized to w×h with the project's own resize.
fn resized_jpeg(name: &str, w: u32, h: u32) -> Vec<u8> {
    let bytes = std::fs::read(sample(name)).unwrap();
    let img = imgsearch::vision::decode::decode(
        &bytes,
        &imgsearch::vision::decode::DecodeLimits::default(),
    )
    .unwrap();
    let small = imgsearch::vision::preprocess::resize(&img, w, h).unwrap();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode(&small.pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn cli(server: &Server, home: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("IMGSEARCH_ENDPOINT", format!("http://{}", server.addr))
        .env("IMGSEARCH_ACCESS_KEY_ID", "AKIDone")
        .env("IMGSEARCH_ACCESS_KEY_SECRET", "secret-one-0123456789")
        .env("XDG_CONFIG_HOME", home)
        .env_remove("IMGSEARCH_PROFILE")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let resp = String::from_utf8_lossy(&raw);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn api_code(r: Result<serde_json::Value, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn client_commands_console_extensions_and_operations() {
    let started = Instant::now();
    let server = start_server(&[], Some(KEYS));
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = Endpoint::parse(&format!("http://{}", server.addr)).unwrap();
    let one = Client::new(
        endpoint.clone(),
        "AKIDone",
        "secret-one-0123456789",
        SignatureStyle::V3,
    )
    .unwrap();
    let two = Client::new(
        endpoint,
        "AKIDtwo",
        "secret-two-0123456789",
        SignatureStyle::V1,
    )
    .unwrap();

    // ---- health ----
    assert_eq!(http_get(&server.addr, "/healthz").0, 200);
    let (status, body) = http_get(&server.addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\""), "{body}");

    // ---- db create / list / delete ----
    assert!(ok(&cli(&server, home.path(), &["db", "create", "products"])).contains("created"));
    ok(&cli(&server, home.path(), &["db", "create", "scratch"]));
    let list = ok(&cli(&server, home.path(), &["db", "list"]));
    assert_eq!(list.lines().collect::<Vec<_>>(), ["products", "scratch"]);
    ok(&cli(&server, home.path(), &["db", "delete", "scratch"]));
    assert_eq!(
        ok(&cli(&server, home.path(), &["db", "list"])).trim(),
        "products"
    );
    // A server error: one line naming code and reason, exit code 3 (an API error).
    let out = cli(&server, home.path(), &["db", "delete", "nothing_here"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidParameter") && err.contains("nothing_here"),
        "{err}"
    );
    // --json: the server's answer as it came.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(&server, home.path(), &["db", "list", "--json"]))).unwrap();
    assert_eq!(listed["Data"]["DbList"][0]["Name"], "products", "{listed}");
    assert!(listed["RequestId"].is_string());
    // Exit codes: 4 when the server cannot be reached, 2 for missing credentials.
    let out = cli(
        &server,
        home.path(),
        &["db", "list", "--endpoint", "http://127.0.0.1:1"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = bin()
        .args([
            "db",
            "list",
            "--endpoint",
            &format!("http://{}", server.addr),
        ])
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("IMGSEARCH_ACCESS_KEY_ID")
        .env_remove("IMGSEARCH_ACCESS_KEY_SECRET")
        .env_remove("IMGSEARCH_PROFILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // V1 signing, and the other tenant sees none of it.
    let out = cli(&server, home.path(), &["db", "list", "--signature", "v1"]);
    assert_eq!(ok(&out).trim(), "products");
    let dbs = rt.block_on(two.call("ListImageDbs", &[])).unwrap();
    assert_eq!(dbs["Data"]["DbList"].as_array().unwrap().len(), 0);

    // ---- profile file instead of env keys ----
    let profile = home.path().join("imgsearch/profile.toml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(
        &profile,
        format!(
            "endpoint = \"http://{}\"\naccess_key_id = \"AKIDtwo\"\naccess_key_secret = \"secret-two-0123456789\"\n",
            server.addr
        ),
    )
    .unwrap();
    let out = bin()
        .args(["db", "create", "from_profile"])
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("IMGSEARCH_ENDPOINT")
        .env_remove("IMGSEARCH_ACCESS_KEY_ID")
        .env_remove("IMGSEARCH_ACCESS_KEY_SECRET")
        .env_remove("IMGSEARCH_PROFILE")
        .output()
        .unwrap();
    ok(&out);
    let dbs = rt.block_on(two.call("ListImageDbs", &[])).unwrap();
    assert_eq!(dbs["Data"]["DbList"][0]["Name"], "from_profile");
    std::fs::remove_file(&profile).unwrap();

    // ---- add (ImageContent upload) and search ----
    let tench = sample("n01440764_tench.JPEG");
    let out = ok(&cli(
        &server,
        home.path(),
        &[
            "add",
            tench.to_str().unwrap(),
            "--db",
            "products",
            "--entity-id",
            "tench",
            "--extra-data",
            "a fish",
            "--attr",
            "IntAttr=5",
            "--attr",
            "StrAttr=fish",
        ],
    ));
    assert!(out.starts_with("added DataId "), "{out}");
    let data_id = out.split_whitespace().nth(2).unwrap().to_string();
    // Attributes and filters from the command line.
    let filtered = |filter: &str| {
        ok(&cli(
            &server,
            home.path(),
            &[
                "search",
                tench.to_str().unwrap(),
                "--db",
                "products",
                "--filter",
                filter,
            ],
        ))
    };
    assert!(filtered("str_attr = 'fish' AND int_attr <= 5").contains(&data_id));
    assert!(!filtered("int_attr > 5").contains(&data_id));
    let out = cli(
        &server,
        home.path(),
        &[
            "search",
            tench.to_str().unwrap(),
            "--db",
            "products",
            "--filter",
            "price > 5",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "an API refusal: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidParameter.Filter"),
        "{out:?}"
    );
    let out = cli(
        &server,
        home.path(),
        &[
            "add",
            tench.to_str().unwrap(),
            "--db",
            "products",
            "--entity-id",
            "x",
            "--attr",
            "IntAttr=cheap",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    let table = ok(&cli(
        &server,
        home.path(),
        &[
            "search",
            tench.to_str().unwrap(),
            "--db",
            "products",
            "--limit",
            "5",
        ],
    ));
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("RANK") && rows[0].contains("EXTRA DATA"),
        "{table}"
    );
    let first: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(
        first[..4],
        ["1", "10.000", "tench", data_id.as_str()],
        "{table}"
    );
    assert!(rows[1].ends_with("a fish"), "{table}");
    // Uploaded images store no ImageUrl: SearchImage gives a signed link to the thumbnail.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let tench_b64 = b64(&std::fs::read(&tench).unwrap());
    let found = rt
        .block_on(one.call(
            "SearchImage",
            &[
                ("DbName", "products"),
                ("Limit", "1"),
                ("ImageContent", &tench_b64),
            ],
        ))
        .unwrap();
    let link = found["Data"]["MatchList"][0]["ImageUrl"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("http://{}/images/", server.addr)),
        "{link}"
    );
    let (status, _) = http_get(&server.addr, link.split_once(&server.addr).unwrap().1);
    assert_eq!(status, 200, "{link}");

    // ---- GetThumbnail: signed, tenant-isolated ----
    let thumb = rt
        .block_on(one.call(
            "GetThumbnail",
            &[("DbName", "products"), ("DataId", &data_id)],
        ))
        .unwrap();
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(thumb["Data"]["ImageContent"].as_str().unwrap())
        .unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    let (status, code, _) = api_code(rt.block_on(two.call(
        "GetThumbnail",
        &[("DbName", "products"), ("DataId", &data_id)],
    )));
    assert_eq!((status, code.as_str()), (400, "InvalidParameter"));

    // ---- ImageContent errors ----
    let add = |content: &str| {
        rt.block_on(one.call(
            "AddImage",
            &[
                ("DbName", "products"),
                ("EntityId", "e"),
                ("ImageContent", content),
            ],
        ))
    };
    let (s, c, m) = api_code(add("not base64!"));
    assert_eq!((s, c.as_str()), (400, "InvalidParameter"));
    assert!(m.contains("ImageContent"), "{m}");
    let (_, c, _) = api_code(add(&b64(b"GIF89a not an image")));
    assert_eq!(c, "InvalidImage.Format");
    let tiny = resized_jpeg("n01443537_goldfish.JPEG", 100, 100);
    let (_, c, m) = api_code(add(&b64(&tiny)));
    assert_eq!(c, "InvalidImage.Resolution", "{m}");
    let (_, c, m) = api_code(add(&b64(&vec![0u8; 2 * 1024 * 1024 + 1])));
    assert_eq!(c, "InvalidImage.Size", "{m}");
    // 3 MB is fine for SearchImage's size rule (it fails on format instead) ...
    let (_, c, _) = api_code(rt.block_on(one.call(
        "SearchImage",
        &[
            ("DbName", "products"),
            ("Limit", "1"),
            ("ImageContent", &b64(&vec![0u8; 3 * 1024 * 1024 - 10])),
        ],
    )));
    assert_eq!(c, "InvalidImage.Format");
    // ... and both sources at once is refused.
    let (_, c, m) = api_code(rt.block_on(one.call(
        "SearchImage",
        &[
            ("DbName", "products"),
            ("Limit", "1"),
            ("ImageUrl", "http://example.com/a.jpg"),
            ("ImageContent", &tench_b64),
        ],
    )));
    assert_eq!(c, "InvalidParameter");
    assert!(m.contains("exactly one"), "{m}");
    // A body over the server's limit: 413 in the API's error format.
    let (s, c, _) = api_code(add(&b64(&vec![0u8; 7 * 1024 * 1024])));
    assert_eq!((s, c.as_str()), (413, "RequestTooLarge"));

    // ---- import a directory twice: the second run resumes (skips what is in) ----
    let dir = work.path().join("photos");
    std::fs::create_dir_all(dir.join("more")).unwrap();
    std::fs::write(
        dir.join("Great White.jpg"),
        resized_jpeg("n01484850_great_white_shark.JPEG", 400, 300),
    )
    .unwrap();
    std::fs::copy(sample("n01443537_goldfish.JPEG"), dir.join("goldfish.jpeg")).unwrap();
    std::fs::copy(
        sample("n01491361_tiger_shark.JPEG"),
        dir.join("more/tiger.JPG"),
    )
    .unwrap();
    std::fs::write(dir.join("small.jpg"), &tiny).unwrap();
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let import = |jobs: &str| {
        cli(
            &server,
            home.path(),
            &[
                "import",
                dir.to_str().unwrap(),
                "--db",
                "products",
                "--jobs",
                jobs,
            ],
        )
    };
    let first = import("3");
    assert!(!first.status.success(), "failures give a non-zero exit");
    let summary = String::from_utf8_lossy(&first.stdout);
    assert!(
        summary.contains("imported 3, skipped 0 (already in), failed 2 of 5"),
        "{summary}"
    );
    assert!(
        summary.contains("small.jpg: InvalidImage.Resolution"),
        "{summary}"
    );
    assert!(
        summary.contains("broken.png: InvalidImage.Format"),
        "{summary}"
    );
    let second = import("2");
    let summary = String::from_utf8_lossy(&second.stdout);
    assert!(
        summary.contains("imported 0, skipped 3 (already in), failed 2 of 5"),
        "{summary}"
    );
    let listed = rt
        .block_on(one.call(
            "ListImages",
            &[("DbName", "products"), ("EntityIdPrefix", "great_white")],
        ))
        .unwrap();
    assert_eq!(listed["Data"]["TotalCount"], 1);
    assert_eq!(
        listed["Data"]["ImageList"][0]["ExtraData"],
        "Great White.jpg"
    );
    // A manifest: path,entity_id,extra_data.
    let manifest = work.path().join("m.csv");
    std::fs::write(
        &manifest,
        "path,entity_id,extra_data\nphotos/goldfish.jpeg,gold_1,\"orange, small\"\n",
    )
    .unwrap();
    let out = ok(&cli(
        &server,
        home.path(),
        &["import", manifest.to_str().unwrap(), "--db", "products"],
    ));
    assert!(out.contains("imported 1, skipped 0"), "{out}");
    let out = ok(&cli(
        &server,
        home.path(),
        &["import", manifest.to_str().unwrap(), "--db", "products"],
    ));
    assert!(out.contains("imported 0, skipped 1"), "{out}");

    // ---- metrics moved; logs carry the RequestId ----
    let (status, text) = http_get(&server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metric(
            &text,
            "imgsearch_requests_total{action=\"AddImage\",status=\"200\"}"
        ) >= 5.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "imgsearch_requests_total{action=\"AddImage\",status=\"400\"}"
        ) >= 4.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "imgsearch_requests_total{action=\"unknown\",status=\"413\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "imgsearch_requests_total{action=\"GetThumbnail\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "imgsearch_request_duration_seconds_count{action=\"SearchImage\",status=\"200\"}"
        ) >= 2.0
    );
    assert!(metric(&text, "imgsearch_images") >= 5.0, "{text}");
    assert!(metric(&text, "imgsearch_databases") >= 1.0, "{text}");
    for private in ["AKIDone", "AKIDtwo", "products"] {
        assert!(!text.contains(private), "/metrics names {private}:\n{text}");
    }
    assert!(metric(&text, "imgsearch_embedding_images_total") >= 7.0);
    assert!(metric(&text, "imgsearch_embedding_batch_size_count") >= 1.0);
    assert!(text.contains("imgsearch_embedding_queue_depth 0"));
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("request_id=") && l.contains("action=\"AddImage\"")),
        "{log}"
    );
    eprintln!("end-to-end client test took {:?}", started.elapsed());
}

/// `imgsearch dedup`: an edited copy (cropped, resized, recompressed) and a re-upload of the
/// same file are grouped with their originals; a picture with no copy is in no group.
#[test]
fn dedup_groups_copies_and_leaves_single_pictures_out() {
    let server = start_server(&[], Some(KEYS));
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    ok(&cli(&server, home.path(), &["db", "create", "dups"]));
    // The tench cropped to its central 80% and made smaller: an edited copy.
    let bytes = std::fs::read(sample("n01440764_tench.JPEG")).unwrap();
    let img = imgsearch::vision::decode::decode(
        &bytes,
        &imgsearch::vision::decode::DecodeLimits::default(),
    )
    .unwrap();
    let (x0, y0, w, h) = (
        img.width / 10,
        img.height / 10,
        img.width * 8 / 10,
        img.height * 8 / 10,
    );
    let mut crop = Vec::with_capacity((w * h * 3) as usize);
    for y in y0..y0 + h {
        let row = ((y * img.width + x0) * 3) as usize;
        crop.extend_from_slice(&img.pixels[row..row + (w * 3) as usize]);
    }
    let crop = imgsearch::vision::decode::RgbImage::from_raw(w, h, crop).unwrap();
    let small = imgsearch::vision::preprocess::resize(&crop, 300, 225).unwrap();
    let mut edited = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut edited, 60)
        .encode(&small.pixels, 300, 225, image::ExtendedColorType::Rgb8)
        .unwrap();
    let edited_path = work.path().join("tench_edited.jpg");
    std::fs::write(&edited_path, edited).unwrap();
    let goldfish = sample("n01443537_goldfish.JPEG");
    let adds: [(&Path, &str, &str); 5] = [
        (&sample("n01440764_tench.JPEG"), "tench", "original"),
        (&goldfish, "goldfish", "first upload"),
        (
            &sample("n15075141_toilet_tissue.JPEG"),
            "tissue",
            "no copy, here",
        ),
        (&edited_path, "tench_copy", "cropped, smaller"),
        (&goldfish, "goldfish_again", "same file"),
    ];
    for (path, entity, extra) in adds {
        let path = path.to_str().unwrap();
        ok(&cli(
            &server,
            home.path(),
            &[
                "add",
                path,
                "--db",
                "dups",
                "--entity-id",
                entity,
                "--extra-data",
                extra,
            ],
        ));
    }
    let out = ok(&cli(
        &server,
        home.path(),
        &["dedup", "--db", "dups", "--format", "csv"],
    ));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(
        rows[0], "group,data_id,entity_id,extra_data,score_to_first",
        "{out}"
    );
    let entities: Vec<(String, String)> = rows[1..]
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split(',').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    let want = [
        ("1", "tench"),
        ("1", "tench_copy"),
        ("2", "goldfish"),
        ("2", "goldfish_again"),
    ];
    assert_eq!(
        entities,
        want.map(|(g, e)| (g.to_string(), e.to_string())),
        "{out}"
    );
    // JSON lines: the re-upload of the same file scores 10 to its first.
    let out = ok(&cli(&server, home.path(), &["dedup", "--db", "dups"]));
    let groups: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{out}");
    assert_eq!(groups[1]["images"][1]["ScoreToFirst"], 10.0, "{out}");
    let copy_score = groups[0]["images"][1]["ScoreToFirst"].as_f64().unwrap();
    assert!((8.0..10.0).contains(&copy_score), "{out}");
}

/// `imgsearch export` writes a manifest and pictures that `import` reads back into another
/// database: every image comes back with its EntityId and ExtraData, a picture much wider
/// than high is enlarged to the API's minimum side, and each original finds its re-imported
/// self first.
#[test]
fn export_writes_what_import_reads_back() {
    let server = start_server(&[], Some(KEYS));
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    ok(&cli(&server, home.path(), &["db", "create", "shop"]));
    // A 1000×300 banner: its 256-px thumbnail is 256×77, under AddImage's 129 px.
    let tench = std::fs::read(sample("n01440764_tench.JPEG")).unwrap();
    let img = image::load_from_memory(&tench).unwrap().to_rgb8();
    let banner = image::imageops::resize(&img, 1000, 300, image::imageops::FilterType::Triangle);
    let banner_path = work.path().join("banner.jpg");
    banner.save(&banner_path).unwrap();
    let adds: [(std::path::PathBuf, &str, &str); 3] = [
        (
            sample("n01443537_goldfish.JPEG"),
            "goldfish",
            "red, \"small\"",
        ),
        (sample("n15075141_toilet_tissue.JPEG"), "tissue", ""),
        (banner_path.clone(), "banner", "wide"),
    ];
    for (path, entity, extra) in &adds {
        let path = path.to_str().unwrap();
        ok(&cli(
            &server,
            home.path(),
            &[
                "add",
                path,
                "--db",
                "shop",
                "--entity-id",
                entity,
                "--extra-data",
                extra,
            ],
        ));
    }
    let out_dir = work.path().join("export");
    let out = cli(
        &server,
        home.path(),
        &["export", "--db", "shop", out_dir.to_str().unwrap()],
    );
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        log.contains("3 of 3 images") && log.contains("1 enlarged"),
        "{log}"
    );
    // A second export into the same directory is refused, changing nothing.
    let again = cli(
        &server,
        home.path(),
        &["export", "--db", "shop", out_dir.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    ok(&cli(&server, home.path(), &["db", "create", "copy"]));
    let manifest = out_dir.join("manifest.csv");
    ok(&cli(
        &server,
        home.path(),
        &["import", manifest.to_str().unwrap(), "--db", "copy"],
    ));
    for (path, entity, _) in &adds {
        let found = ok(&cli(
            &server,
            home.path(),
            &["search", path.to_str().unwrap(), "--db", "copy", "--json"],
        ));
        let v: serde_json::Value = serde_json::from_str(&found).unwrap();
        let first = &v["Data"]["MatchList"][0];
        assert_eq!(first["EntityId"], *entity, "{found}");
    }
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(r#",goldfish,"red, ""small""""#), "{text}");
}
