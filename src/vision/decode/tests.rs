//! Tests of decoding: formats, colour layouts, orientation, limits and hostile input, on
//! the shared sample photos and on files built here. `samples`/`sample` are shared with
//! `preprocess`'s tests.

use super::*;
use std::path::PathBuf;
use std::time::Instant;

/// The shared sample photos. Fails loudly when missing: these tests must not pass
/// vacuously on a machine without the data.
pub(crate) fn samples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/imagenet-samples");
    assert!(
        dir.is_dir(),
        "sample images not found at {} (expected the shared data checkout beside the repo)",
        dir.display()
    );
    dir
}

/// All sample files, sorted, with their bytes.
pub(crate) fn samples() -> Vec<(String, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

pub(crate) fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join(name)).unwrap()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn ihdr(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&width.to_be_bytes());
    d.extend_from_slice(&height.to_be_bytes());
    d.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    d
}

/// zlib stream of stored (uncompressed) deflate blocks: lets tests write exact
/// PNG scanlines without a compressor.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// Big-endian TIFF with one IFD holding only the Orientation tag.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2a\0\0\0\x08".to_vec();
    t.extend_from_slice(&1u16.to_be_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_be_bytes()); // count
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]); // value padding
    t.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    t
}

fn encode_jpeg(
    data: &[u8],
    w: u16,
    h: u16,
    color: jpeg_encoder::ColorType,
    exif: Option<u16>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 100);
    if let Some(o) = exif {
        enc.add_exif_metadata(&exif_tiff(o)).unwrap();
    }
    enc.encode(data, w, h, color).unwrap();
    out
}

fn encode_png(data: &[u8], w: u32, h: u32, color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, w, h, color)
        .unwrap();
    out
}

/// `image`'s encoders take 16-bit samples in native byte order.
fn ne16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn assert_close(actual: [u8; 3], expected: [u8; 3], tol: u8, what: &str) {
    for c in 0..3 {
        assert!(
            actual[c].abs_diff(expected[c]) <= tol,
            "{what}: got {actual:?}, expected {expected:?} ± {tol}"
        );
    }
}

#[test]
fn empty_input_is_empty_error() {
    assert!(matches!(sniff(&[]), Err(DecodeError::Empty)));
    assert!(matches!(
        decode(&[], &DecodeLimits::default()),
        Err(DecodeError::Empty)
    ));
    assert!(matches!(probe(&[]), Err(DecodeError::Empty)));
}

#[test]
fn gif_is_rejected_by_name() {
    // A complete 1x1 GIF89a.
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    let err = decode(gif, &DecodeLimits::default()).unwrap_err();
    match &err {
        DecodeError::UnsupportedFormat { detected } => assert_eq!(detected, "GIF"),
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "image is a GIF; only JPEG and PNG are accepted"
    );
}

#[test]
fn other_formats_and_noise_are_typed_errors() {
    let cases: [(&[u8], &str); 5] = [
        (b"RIFF\x24\0\0\0WEBPVP8 ", "WebP"),
        (b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", "BMP"),
        (b"II*\0\x08\0\0\0", "TIFF"),
        (b"\0\0\0\x1cftypheic\0\0\0\0", "HEIF/HEIC"),
        (b"\x13\x37 definitely not an image", "unknown"),
    ];
    for (bytes, name) in cases {
        match decode(bytes, &DecodeLimits::default()) {
            Err(DecodeError::UnsupportedFormat { detected }) => assert_eq!(detected, name),
            other => panic!("{name}: expected UnsupportedFormat, got {other:?}"),
        }
    }
    // Pseudo-random noise of many lengths, and noise behind valid magic bytes.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..300usize {
        let noise: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for prefix in [&b""[..], &[0xFF, 0xD8, 0xFF][..], &PNG_SIGNATURE[..]] {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&noise);
            assert!(decode(&bytes, &DecodeLimits::default()).is_err());
        }
    }
}

#[test]
fn png_bomb_header_is_rejected_before_allocating() {
    // A syntactically valid PNG (correct CRCs) claiming 100,000 x 100,000 RGB pixels,
    // i.e. 30 GB once decoded, with a token IDAT.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(100_000, 100_000, 8, 2));
    png_chunk(&mut png, b"IDAT", &zlib_stored(&[0; 64]));
    png_chunk(&mut png, b"IEND", &[]);

    assert_eq!(probe(&png).unwrap(), (ImageFormat::Png, 100_000, 100_000));
    let start = Instant::now();
    let err = decode(&png, &DecodeLimits::default()).unwrap_err();
    // If anything had tried to allocate or fill 30 GB we would not be here quickly.
    assert!(
        start.elapsed().as_millis() < 100,
        "took {:?}",
        start.elapsed()
    );
    match err {
        DecodeError::TooLarge { width, height, .. } => {
            assert_eq!((width, height), (100_000, 100_000))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Within the side limit but over the pixel budget is also TooLarge.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(10_000, 10_000, 8, 6));
    png_chunk(&mut png, b"IEND", &[]);
    assert!(matches!(
        decode(&png, &DecodeLimits::default()),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn jpeg_over_limits_is_rejected_from_header() {
    let jpeg = sample("n01440764_tench.JPEG");
    let (_, w, h) = probe(&jpeg).unwrap();
    let tight = DecodeLimits {
        max_side: w - 1,
        max_pixels: u64::MAX,
    };
    assert!(matches!(
        decode(&jpeg, &tight),
        Err(DecodeError::TooLarge { .. })
    ));
    let tight = DecodeLimits {
        max_side: u32::MAX,
        max_pixels: u64::from(w * h) - 1,
    };
    assert!(matches!(
        decode(&jpeg, &tight),
        Err(DecodeError::TooLarge { .. })
    ));
    let exact = DecodeLimits {
        max_side: w.max(h),
        max_pixels: u64::from(w * h),
    };
    assert!(decode(&jpeg, &exact).is_ok());
    // Over the limit and truncated: the size is the problem reported.
    let tight = DecodeLimits {
        max_side: w - 1,
        max_pixels: u64::MAX,
    };
    assert!(matches!(
        decode(&jpeg[..jpeg.len() / 2], &tight),
        Err(DecodeError::TooLarge { .. })
    ));
    // A small JPEG whose frame header is patched to claim 60000 x 60000 (10.8 GB of
    // RGB): rejected from the header, quickly.
    let mut bomb = quadrant_jpeg(None);
    let sof = bomb.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    assert_eq!(probe(&bomb).unwrap(), (ImageFormat::Jpeg, 60000, 60000));
    let start = Instant::now();
    assert!(matches!(
        decode(&bomb, &DecodeLimits::default()),
        Err(DecodeError::TooLarge {
            width: 60000,
            height: 60000,
            ..
        })
    ));
    assert!(start.elapsed().as_millis() < 100);
}

#[test]
fn truncated_jpeg_is_a_typed_truncated_error() {
    // Policy (see module docs): data cut before EOI is rejected, not grey-filled.
    let jpeg = sample("n01443537_goldfish.JPEG");
    let half = &jpeg[..jpeg.len() / 2];
    match decode(half, &DecodeLimits::default()) {
        Err(DecodeError::Truncated {
            format: ImageFormat::Jpeg,
            ..
        }) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
    // The header is intact, so probing still works (the API can report the size).
    assert_eq!(probe(half).unwrap(), probe(&jpeg).unwrap());
    // Every cut point, including inside headers, gives an error and never a panic.
    for cut in (0..jpeg.len() - 1).step_by(97) {
        assert!(
            decode(&jpeg[..cut], &DecodeLimits::default()).is_err(),
            "cut at {cut}"
        );
    }
    // The whole file is fine, and so is one with junk after EOI (common in the wild).
    assert!(decode(&jpeg, &DecodeLimits::default()).is_ok());
    let mut padded = jpeg.clone();
    padded.extend_from_slice(&[0u8; 100]);
    assert!(decode(&padded, &DecodeLimits::default()).is_ok());
}

/// Progressive JPEGs (common on the web; several in Debian's wallpaper packages) decode;
/// their scans are separated by markers, so the EOI cut that catches truncated baseline
/// files must not cut them short.
#[test]
fn progressive_jpeg_decodes_and_its_truncation_is_still_caught() {
    let (w, h) = (320u16, 200u16);
    let data: Vec<u8> = (0..usize::from(w) * usize::from(h) * 3)
        .map(|i| ((i / 3) % 251 + (i % 3) * 40) as u8)
        .collect();
    let mut jpeg = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, 90);
    enc.set_progressive(true);
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let img = decode(&jpeg, &DecodeLimits::default()).expect("a whole progressive JPEG");
    assert_eq!((img.width, img.height), (u32::from(w), u32::from(h)));
    // Close to what was encoded (quality 90): no grey fill.
    let err: f64 = img
        .pixels
        .iter()
        .zip(&data)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / data.len() as f64;
    assert!(err < 6.0, "mean error {err}");
    assert!(decode(&jpeg[..jpeg.len() / 2], &DecodeLimits::default()).is_err());
}

#[test]
fn truncated_png_is_a_typed_error() {
    let data: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let png = encode_png(&data, 64, 64, image::ExtendedColorType::Rgb8);
    assert!(decode(&png, &DecodeLimits::default()).is_ok());
    for cut in (0..png.len() - 12).step_by(53) {
        let r = decode(&png[..cut], &DecodeLimits::default());
        assert!(r.is_err(), "cut at {cut} decoded");
    }
    assert!(matches!(
        decode(&png[..png.len() / 2], &DecodeLimits::default()),
        Err(DecodeError::Truncated {
            format: ImageFormat::Png,
            ..
        })
    ));
}

#[test]
fn cmyk_and_ycck_jpegs_decode_to_the_right_rgb() {
    // Ink values (0 = no ink). jpeg-encoder stores them inverted with an Adobe APP14
    // marker, as Photoshop does; the decoder must undo the inversion:
    // R = 255 (1 - C)(1 - K) etc.
    let inks: [([u8; 4], [u8; 3]); 4] = [
        ([0, 255, 255, 0], [255, 0, 0]),   // red
        ([0, 128, 255, 64], [191, 95, 0]), // orange-brown
        ([0, 0, 0, 255], [0, 0, 0]),       // black
        ([64, 0, 32, 0], [191, 255, 223]), // pale green
    ];
    for color in [
        jpeg_encoder::ColorType::Cmyk,
        jpeg_encoder::ColorType::CmykAsYcck,
    ] {
        for (ink, rgb) in inks {
            let data: Vec<u8> = ink.iter().copied().cycle().take(32 * 24 * 4).collect();
            let jpeg = encode_jpeg(&data, 32, 24, color, None);
            let img = decode(&jpeg, &DecodeLimits::default()).unwrap();
            assert_eq!((img.width, img.height), (32, 24));
            for (x, y) in [(0, 0), (16, 12), (31, 23)] {
                assert_close(img.pixel(x, y), rgb, 4, &format!("{color:?} ink {ink:?}"));
            }
        }
    }
}

#[test]
fn grayscale_jpeg_gives_equal_channels() {
    let data: Vec<u8> = (0..48 * 40).map(|i| (i % 48 * 5) as u8).collect();
    let jpeg = encode_jpeg(&data, 48, 40, jpeg_encoder::ColorType::Luma, None);
    let img = decode(&jpeg, &DecodeLimits::default()).unwrap();
    assert_eq!((img.width, img.height), (48, 40));
    assert!(img
        .pixels
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2]));
    // And the content survived: a horizontal ramp, 0 at the left, 235 at the right.
    assert!(img.pixel(0, 20)[0] < 8 && img.pixel(47, 20)[0] > 225);
}

#[test]
fn sixteen_bit_png_rounds_to_nearest_8_bit() {
    // 0x1234 = 18.13 * 257, 0x8080 = 128 * 257, 0x80FF = 128.49 * 257, 0x0101 = 257.
    let rgb = ne16(&[0x1234, 0x8080, 0xFFFF, 0x0000, 0x80FF, 0x0101]);
    let png = encode_png(&rgb, 2, 1, image::ExtendedColorType::Rgb16);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!(img.pixels, [18, 128, 255, 0, 128, 1]);
    // Grey 16-bit with alpha: opaque mid grey, and fully transparent → white.
    let la = ne16(&[0x4040, 0xFFFF, 0x0000, 0x0000]);
    let png = encode_png(&la, 2, 1, image::ExtendedColorType::La16);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!(img.pixels, [64, 64, 64, 255, 255, 255]);
}

#[test]
fn rgba_png_is_composited_over_white() {
    let rgba = [
        10, 20, 30, 255, // opaque: unchanged
        10, 20, 30, 0, // transparent: white whatever the colour
        0, 0, 0, 128, // half black over white: 127
        200, 100, 0, 64, // quarter alpha
    ];
    let png = encode_png(&rgba, 2, 2, image::ExtendedColorType::Rgba8);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!(img.pixel(0, 0), [10, 20, 30]);
    assert_eq!(img.pixel(1, 0), [255, 255, 255]);
    assert_eq!(img.pixel(0, 1), [127, 127, 127]);
    // 200*64/255 + 255*191/255 = 241.2; 100 → 216.1; 0 → 191.
    assert_eq!(img.pixel(1, 1), [241, 216, 191]);
}

#[test]
fn palette_png_with_transparency_and_grey_png() {
    // 4x1, 2-bit palette: red, green, blue, and a fully transparent entry.
    let mut png = PNG_SIGNATURE.to_vec();
    png_chunk(&mut png, b"IHDR", &ihdr(4, 1, 2, 3));
    png_chunk(
        &mut png,
        b"PLTE",
        &[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9],
    );
    png_chunk(&mut png, b"tRNS", &[255, 255, 255, 0]);
    // Filter byte 0, then indices 0,1,2,3 packed 2 bits each: 0b00_01_10_11.
    png_chunk(&mut png, b"IDAT", &zlib_stored(&[0, 0b0001_1011]));
    png_chunk(&mut png, b"IEND", &[]);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!(img.pixels, [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);

    let png = encode_png(&[0, 77, 255], 3, 1, image::ExtendedColorType::L8);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!(img.pixels, [0, 0, 0, 77, 77, 77, 255, 255, 255]);
}

#[test]
fn orientation_transforms_match_exif_definitions() {
    // a b c
    // d e f
    let px = |c: u8| [c, c.wrapping_add(100), c.wrapping_add(200)];
    let img = RgbImage::from_raw(3, 2, b"abcdef".iter().flat_map(|&c| px(c)).collect()).unwrap();
    let expected: [(u8, u32, &[u8; 6]); 8] = [
        (1, 3, b"abcdef"),
        (2, 3, b"cbafed"), // mirror
        (3, 3, b"fedcba"), // rotate 180
        (4, 3, b"defabc"), // flip
        (5, 2, b"adbecf"), // transpose
        (6, 2, b"daebfc"), // rotate 90 clockwise
        (7, 2, b"fcebda"), // transverse
        (8, 2, b"cfbead"), // rotate 90 anticlockwise
    ];
    for (o, w, letters) in expected {
        let out = apply_orientation(img.clone(), o);
        assert_eq!((out.width, out.height), (w, 6 / w), "orientation {o}");
        let want: Vec<u8> = letters.iter().flat_map(|&c| px(c)).collect();
        assert_eq!(out.pixels, want, "orientation {o}");
    }
    // Invalid values leave the image alone.
    assert_eq!(apply_orientation(img.clone(), 0).pixels, img.pixels);
    assert_eq!(apply_orientation(img.clone(), 9).pixels, img.pixels);
}

/// 64x32 JPEG in four 32x16 quadrants: red top-left, green top-right,
/// blue bottom-left, white bottom-right.
fn quadrant_jpeg(orientation: Option<u16>) -> Vec<u8> {
    let (w, h) = (64usize, 32usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(match (x < w / 2, y < h / 2) {
                (true, true) => &[255, 0, 0],
                (false, true) => &[0, 255, 0],
                (true, false) => &[0, 0, 255],
                (false, false) => &[255, 255, 255],
            });
        }
    }
    encode_jpeg(
        &data,
        w as u16,
        h as u16,
        jpeg_encoder::ColorType::Rgb,
        orientation,
    )
}

#[test]
fn exif_rotated_jpegs_come_out_upright() {
    const RED: [u8; 3] = [255, 0, 0];
    const GREEN: [u8; 3] = [0, 255, 0];
    const BLUE: [u8; 3] = [0, 0, 255];
    const WHITE: [u8; 3] = [255, 255, 255];
    // (orientation, out w, out h, colours at top-left, top-right, bottom-left,
    // bottom-right of the output)
    let cases = [
        (1, 64, 32, [RED, GREEN, BLUE, WHITE]),
        (6, 32, 64, [BLUE, RED, WHITE, GREEN]), // turned clockwise: left column on top
        (8, 32, 64, [GREEN, WHITE, RED, BLUE]), // anticlockwise: right column on top
        (3, 64, 32, [WHITE, BLUE, GREEN, RED]),
    ];
    for (o, w, h, [tl, tr, bl, br]) in cases {
        let jpeg = quadrant_jpeg(Some(o));
        let info = probe_info(&jpeg).unwrap();
        assert_eq!(
            (info.width, info.height, info.orientation),
            (64, 32, o as u8)
        );
        assert_eq!(info.oriented_dims(), (w, h));
        let img = decode(&jpeg, &DecodeLimits::default()).unwrap();
        assert_eq!((img.width, img.height), (w, h), "orientation {o}");
        let at = |x: u32, y: u32| img.pixel(x, y);
        assert_close(at(2, 2), tl, 8, &format!("o={o} top-left"));
        assert_close(at(w - 3, 2), tr, 8, &format!("o={o} top-right"));
        assert_close(at(2, h - 3), bl, 8, &format!("o={o} bottom-left"));
        assert_close(at(w - 3, h - 3), br, 8, &format!("o={o} bottom-right"));
    }
    // No EXIF at all: orientation 1.
    assert_eq!(probe_info(&quadrant_jpeg(None)).unwrap().orientation, 1);
}

#[test]
fn png_exif_orientation_is_applied() {
    use image::ImageEncoder;
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    enc.set_exif_metadata(exif_tiff(6)).unwrap();
    // 2x1: red, blue → rotated clockwise: 1x2, red on top.
    enc.write_image(
        &[255, 0, 0, 0, 0, 255],
        2,
        1,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    assert_eq!(probe_info(&png).unwrap().orientation, 6);
    let img = decode(&png, &DecodeLimits::default()).unwrap();
    assert_eq!((img.width, img.height), (1, 2));
    assert_eq!(img.pixels, [255, 0, 0, 0, 0, 255]);
}

#[test]
fn every_sample_decodes() {
    let samples = samples();
    assert_eq!(samples.len(), 1000, "expected the 1,000 imagenet samples");
    let mut grey = 0;
    for (name, bytes) in &samples {
        assert_eq!(sniff(bytes).unwrap(), ImageFormat::Jpeg, "{name}");
        let info = probe_info(bytes).unwrap();
        let img = decode(bytes, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width, img.height), info.oriented_dims(), "{name}");
        assert_eq!(
            img.pixels.len(),
            img.width as usize * img.height as usize * 3
        );
        if scan_jpeg(bytes, ScanDepth::Headers).unwrap().components == 1 {
            grey += 1;
            assert!(
                img.pixels
                    .chunks_exact(3)
                    .all(|p| p[0] == p[1] && p[1] == p[2]),
                "{name}: greyscale JPEG must give R=G=B"
            );
        }
    }
    assert_eq!(
        grey, 23,
        "the data set's README promises 23 greyscale photos"
    );
}

/// The frame header's dimensions set to `w`×`h` (SOF0/SOF2), the scan data left as it is.
fn with_frame_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2))
        .expect("a frame header");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

#[test]
fn a_frame_header_claiming_more_pixels_than_the_data_holds_is_truncated() {
    // A complete 200×200 JPEG (EOI and all) whose frame header says 1023×1023: the scan
    // data covers a fifth of the rows; the rest would be invented grey.
    let data: Vec<u8> = (0..200 * 200 * 3).map(|i| (i * 13 % 251) as u8).collect();
    let small = encode_jpeg(&data, 200, 200, jpeg_encoder::ColorType::Rgb, None);
    assert!(decode(&small, &DecodeLimits::default()).is_ok());
    for (w, h) in [(1023, 1023), (200, 1000), (1000, 200), (200, 232)] {
        let lying = with_frame_size(&small, w, h);
        match decode(&lying, &DecodeLimits::default()) {
            Err(DecodeError::Truncated {
                format: ImageFormat::Jpeg,
                ..
            }) => {}
            other => panic!(
                "{w}x{h}: expected Truncated, got {:?}",
                other.map(|i| (i.width, i.height))
            ),
        }
    }
    // A progressive photo with its height stretched the same way.
    let photo = sample("n01443537_goldfish.JPEG");
    let (_, pw, ph) = probe(&photo).unwrap();
    let lying = with_frame_size(&photo, pw as u16, (ph * 2) as u16);
    assert!(decode(&lying, &DecodeLimits::default()).is_err());
}
