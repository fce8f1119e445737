//! Image decoding: untrusted JPEG/PNG bytes in, an upright RGB8 bitmap out.
//!
//! This module is the only place that parses image files. It sniffs the format from the
//! content (never a file name), reads the header to check the stored dimensions against
//! [`DecodeLimits`] *before* any pixel buffer is allocated (decompression bombs), decodes,
//! converts every supported colour layout to RGB8 (greyscale, CMYK/YCCK JPEG, 16-bit and
//! palette PNG, alpha composited over white) and applies the EXIF orientation. Every bad
//! input ends as a typed [`DecodeError`] whose message tells the uploader what to do.
//!
//! It is not where images are resized or turned into tensors (`preprocess`), nor where
//! API-level resolution rules live: [`probe`] / [`probe_info`] give the API layer the stored
//! and displayed sizes cheaply so that it can apply its own rules.
//!
//! Truncated files: a JPEG whose data ends before its EOI marker, and a PNG whose data ends
//! before its image data is complete, are rejected as [`DecodeError::Truncated`]. The JPEG
//! decoder would otherwise happily fill the missing rows with grey, and a half-grey photo
//! would be indexed with a meaningless embedding; a client that sent an incomplete upload is
//! better told to send it again. (Cost of this choice: the rare complete JPEG written without
//! an EOI marker is rejected too.)
//!
//! Colour management is out of scope: ICC profiles, gAMA and cHRM are ignored and samples
//! are taken as sRGB, as the reference preprocessing (PIL) does; CMYK is converted with the
//! plain (1 − C)(1 − K) formula, not through a profile.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// The two formats the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    /// Short human name, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
        }
    }

    /// MIME type, for HTTP responses.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// RGB8, interleaved, row-major, already EXIF-oriented.
#[derive(Debug, Clone)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps a pixel buffer, checking that its length is `3 * width * height`.
    pub fn from_raw(width: u32, height: u32, pixels: Vec<u8>) -> Option<RgbImage> {
        let expected = (width as usize)
            .checked_mul(height as usize)?
            .checked_mul(3)?;
        (pixels.len() == expected).then_some(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// A `width`×`height` image filled with one colour (handy for tests and placeholders).
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        let n = width as usize * height as usize;
        let mut pixels = Vec::with_capacity(n * 3);
        for _ in 0..n {
            pixels.extend_from_slice(&rgb);
        }
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    /// The pixel at (x, y); panics when out of bounds, like slice indexing.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(x < self.width && y < self.height, "pixel out of bounds");
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Upper bounds on what [`decode`] will accept, checked against the header before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Longest allowed side, in pixels.
    pub max_side: u32,
    /// Largest allowed width × height.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 40 Mpx covers the default output of phone and most system cameras (the rare larger
        // file is rejected with a message asking for a smaller copy) and bounds one decode
        // at 120 MB of RGB8.
        DecodeLimits {
            max_side: 16384,
            max_pixels: 40_000_000,
        }
    }
}

impl DecodeLimits {
    /// `Ok` when a `width`×`height` image is within these limits.
    pub fn check(&self, width: u32, height: u32) -> Result<(), DecodeError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_side || height > self.max_side || pixels > self.max_pixels {
            return Err(DecodeError::TooLarge {
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// Why an image could not be decoded. Messages are meant for the person who uploaded it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("image is empty (0 bytes); send the file's contents")]
    Empty,
    /// Not JPEG or PNG; `detected` names what it looks like ("GIF", "WebP", ... or
    /// "unknown").
    #[error("{}", unsupported_format_message(detected))]
    UnsupportedFormat { detected: String },
    #[error(
        "image is {width}x{height} pixels, above the limit of {max_side} pixels per side and \
         {max_pixels} pixels in total; send a smaller copy"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error(
        "{format} file is truncated ({detail}); the upload is incomplete, send the whole file"
    )]
    Truncated { format: ImageFormat, detail: String },
    #[error("image data is corrupt: {0}")]
    Corrupt(String),
    #[error("image uses an unsupported colour layout: {0}; re-save it as 8-bit RGB or greyscale")]
    UnsupportedColor(String),
    #[error(
        "image uses an unsupported encoding feature: {0}; re-save it as a baseline or \
         progressive JPEG or a standard PNG"
    )]
    UnsupportedFeature(String),
}

fn unsupported_format_message(detected: &str) -> String {
    if detected == "unknown" {
        "image format not recognised (neither JPEG nor PNG); only JPEG and PNG are accepted"
            .to_string()
    } else {
        // "an AVIF", "an SVG", "a GIF": by how the name is spoken.
        let article = if detected.starts_with(['A', 'E', 'I', 'O', 'U']) || detected == "SVG" {
            "an"
        } else {
            "a"
        };
        format!("image is {article} {detected}; only JPEG and PNG are accepted")
    }
}

/// What [`probe_info`] learns from the header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Stored (pre-orientation) width.
    pub width: u32,
    /// Stored (pre-orientation) height.
    pub height: u32,
    /// EXIF orientation, 1..=8 (1 when absent or invalid).
    pub orientation: u8,
}

impl ImageInfo {
    /// Width and height as displayed, i.e. after the EXIF orientation (swapped for 5..=8).
    pub fn oriented_dims(&self) -> (u32, u32) {
        if self.orientation >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Format sniffed from magic bytes (never the file name).
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(ImageFormat::Png);
    }
    // Name the common formats people actually send, so the message is useful.
    let detected = if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "GIF"
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "WebP"
    } else if bytes.starts_with(b"BM") {
        "BMP"
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "TIFF"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"avif" | b"avis" => "AVIF",
            b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1" | b"hevc" => "HEIF/HEIC",
            _ => "ISO media file (MP4/MOV/HEIF family)",
        }
    } else if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n") {
        "JPEG XL"
    } else if bytes.starts_with(&[0, 0, 1, 0]) {
        "ICO"
    } else if bytes.starts_with(b"%PDF") {
        "PDF"
    } else if bytes.starts_with(b"8BPS") {
        "Photoshop PSD"
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        // SOI followed by something other than a marker: a JPEG in name only.
        return Err(DecodeError::Corrupt(
            "JPEG start marker is not followed by a segment".to_string(),
        ));
    } else if looks_like_svg(bytes) {
        "SVG"
    } else {
        "unknown"
    };
    Err(DecodeError::UnsupportedFormat {
        detected: detected.to_string(),
    })
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    (t.starts_with("<?xml") || t.starts_with("<svg")) && text.contains("<svg")
}

/// Header-only look: format and stored width/height, without decoding pixels.
pub fn probe(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), DecodeError> {
    let info = probe_info(bytes)?;
    Ok((info.format, info.width, info.height))
}

/// Header-only look including the EXIF orientation (for the displayed size).
///
/// Reads JPEG segments up to the first scan and PNG chunks up to the first IDAT; nothing is
/// allocated in proportion to the image size.
pub fn probe_info(bytes: &[u8]) -> Result<ImageInfo, DecodeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => {
            let h = scan_jpeg(bytes, ScanDepth::Headers)?;
            Ok(h.info())
        }
        ImageFormat::Png => {
            let h = scan_png(bytes)?;
            Ok(ImageInfo {
                format: ImageFormat::Png,
                width: h.width,
                height: h.height,
                orientation: h.orientation,
            })
        }
    }
}

/// Full decode to RGB8, EXIF orientation applied.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let (img, orientation) = decode_unoriented(bytes, limits)?;
    Ok(apply_orientation(img, orientation))
}

/// Decodes without applying the EXIF orientation; returns the orientation (1..=8) to apply.
///
/// For callers that can apply the orientation more cheaply later (e.g. after downscaling).
pub fn decode_unoriented(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(RgbImage, u8), DecodeError> {
    match sniff(bytes)? {
        ImageFormat::Jpeg => {
            // The limits are checked as soon as the frame header is read, so an oversized
            // file is reported as such even when it is also truncated.
            let header = scan_jpeg(bytes, ScanDepth::WholeFile(limits))?;
            let img = decode_jpeg_zune(bytes, &header, limits)?;
            Ok((img, header.orientation))
        }
        ImageFormat::Png => {
            let header = scan_png(bytes)?;
            limits.check(header.width, header.height)?;
            let img = decode_png(bytes, &header, limits)?;
            Ok((img, header.orientation))
        }
    }
}

// ---------------------------------------------------------------------------------------
// JPEG

#[derive(Debug, Clone, Copy)]
enum ScanDepth<'a> {
    /// Stop at the first start-of-scan: enough for dimensions and orientation.
    Headers,
    /// Check the frame size against the limits, then walk on to the EOI marker, to detect
    /// truncation before decoding.
    WholeFile(&'a DecodeLimits),
}

#[derive(Debug, Clone)]
struct JpegHeader {
    width: u32,
    height: u32,
    components: u8,
    orientation: u8,
}

impl JpegHeader {
    fn info(&self) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Jpeg,
            width: self.width,
            height: self.height,
            orientation: self.orientation,
        }
    }
}

fn truncated_jpeg(detail: &str) -> DecodeError {
    DecodeError::Truncated {
        format: ImageFormat::Jpeg,
        detail: detail.to_string(),
    }
}

/// Walks the JPEG marker structure without decoding anything.
///
/// We do this ourselves rather than rely on the decoder because (a) the dimension check must
/// come before the decoder allocates, (b) zune-jpeg silently grey-fills truncated data and
/// this walk is how we notice, and (c) it is a cheap pass over bytes with no allocation.
fn scan_jpeg(bytes: &[u8], depth: ScanDepth) -> Result<JpegHeader, DecodeError> {
    let mut frame: Option<JpegHeader> = None;
    let mut orientation: Option<u8> = None;
    // Metadata counts only before the first scan, so that `probe_info` (which stops there)
    // and `decode` (which walks on to EOI) always agree.
    let mut seen_scan = false;
    let mut pos = 2; // after SOI
    loop {
        // Find the next marker. Bytes that are not 0xFF between segments are invalid but
        // common enough (padding written by some tools) that decoders skip them; so do we.
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(truncated_jpeg(if frame.is_none() {
                "the data ends before the frame header"
            } else {
                "the data ends before the end-of-image marker"
            }));
        };
        pos += 1;
        match marker {
            0xD9 => break, // EOI
            // Stand-alone markers: SOI, RSTn, TEM, or a stray stuffed zero.
            0xD8 | 0xD0..=0xD7 | 0x01 | 0x00 => continue,
            _ => {}
        }
        let Some(len_bytes) = bytes.get(pos..pos + 2) else {
            return Err(truncated_jpeg("the data ends inside a segment header"));
        };
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(DecodeError::Corrupt(format!(
                "JPEG segment 0xFF{marker:02X} has an invalid length {len}"
            )));
        }
        let Some(segment) = bytes.get(pos + 2..pos + len) else {
            return Err(truncated_jpeg("the data ends inside a header segment"));
        };
        pos += len;
        match marker {
            // SOFn, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if frame.is_some() {
                    // A second frame header only happens in hierarchical JPEGs, which
                    // nobody writes; the decoder rejects them with its own message.
                    continue;
                }
                if segment.len() < 6 {
                    return Err(DecodeError::Corrupt(
                        "JPEG frame header is too short".into(),
                    ));
                }
                let height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
                let width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
                let components = segment[5];
                if width == 0 {
                    return Err(DecodeError::Corrupt(
                        "JPEG frame header says width 0".into(),
                    ));
                }
                if height == 0 {
                    // Height 0 means "given later by a DNL marker", which no mainstream
                    // decoder supports.
                    return Err(DecodeError::UnsupportedFeature(
                        "JPEG height defined by a DNL marker".into(),
                    ));
                }
                if matches!(marker, 0xC9..=0xCF) {
                    return Err(DecodeError::UnsupportedFeature(
                        "arithmetic-coded JPEG".into(),
                    ));
                }
                if let ScanDepth::WholeFile(limits) = depth {
                    limits.check(width, height)?;
                }
                frame = Some(JpegHeader {
                    width,
                    height,
                    components,
                    orientation: 1,
                });
            }
            0xE1 if !seen_scan && orientation.is_none() && segment.starts_with(b"Exif\0\0") => {
                orientation = Some(exif_orientation(&segment[6..]));
            }
            0xDA => {
                if frame.is_none() {
                    return Err(DecodeError::Corrupt(
                        "JPEG scan starts before the frame header".into(),
                    ));
                }
                seen_scan = true;
                if matches!(depth, ScanDepth::Headers) {
                    break;
                }
                // Skip the entropy-coded data: it ends at the first 0xFF that is followed
                // by neither a stuffed zero nor a restart marker (nor more fill bytes).
                loop {
                    match bytes[pos.min(bytes.len())..]
                        .iter()
                        .position(|&b| b == 0xFF)
                    {
                        None => {
                            return Err(truncated_jpeg(
                                "the data ends inside the compressed image data",
                            ))
                        }
                        Some(off) => pos += off + 1,
                    }
                    match bytes.get(pos) {
                        None => {
                            return Err(truncated_jpeg(
                                "the data ends inside the compressed image data",
                            ))
                        }
                        Some(0x00 | 0xD0..=0xD7 | 0xFF) => continue,
                        Some(_) => {
                            pos -= 1; // back to the 0xFF so the outer loop sees a marker
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut header = frame.ok_or_else(|| {
        DecodeError::Corrupt("JPEG has no frame header (no image dimensions)".into())
    })?;
    header.orientation = orientation.unwrap_or(1);
    Ok(header)
}

/// EXIF orientation (1..=8) from a TIFF-structured EXIF blob; 1 when absent or invalid.
fn exif_orientation(tiff: &[u8]) -> u8 {
    Orientation::from_exif_chunk(tiff).map_or(1, Orientation::to_exif)
}

/// Maps a zune-jpeg error to ours.
fn zune_error(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    use zune_jpeg::errors::DecodeErrors as Z;
    match e {
        Z::Unsupported(scheme) => DecodeError::UnsupportedFeature(format!("JPEG {scheme:?}")),
        Z::ExhaustedData => truncated_jpeg("the decoder ran out of data"),
        other => DecodeError::Corrupt(format!("JPEG: {other}")),
    }
}

fn decode_jpeg_zune(
    bytes: &[u8],
    header: &JpegHeader,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    let options = DecoderOptions::default()
        // Lenient like browsers: tolerate the small spec violations common in the wild.
        // Truncation, the one leniency we do not want, was caught by `scan_jpeg`.
        .set_strict_mode(false)
        // Second guard on the dimensions, enforced by the decoder itself.
        .set_max_width(limits.max_side as usize)
        .set_max_height(limits.max_side as usize)
        // zune converts greyscale, YCbCr, RGB, CMYK and YCCK (Adobe inverted convention, as
        // Photoshop writes them) to RGB itself.
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    guard_panics("JPEG", || {
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.decode_headers().map_err(zune_error)?;
        let input = decoder.input_colorspace();
        // Only these have a defined conversion to RGB in zune-jpeg; anything else (e.g. a
        // two-component file) would be copied through as garbage or hit an internal panic.
        if !matches!(
            input,
            Some(
                ColorSpace::YCbCr
                    | ColorSpace::Luma
                    | ColorSpace::RGB
                    | ColorSpace::CMYK
                    | ColorSpace::YCCK
            )
        ) {
            return Err(DecodeError::UnsupportedColor(format!(
                "JPEG with {} components ({input:?})",
                header.components
            )));
        }
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| DecodeError::Corrupt("JPEG headers could not be read".into()))?;
        let (w, h) = (dim_u32(w)?, dim_u32(h)?);
        // Header walk and decoder must agree, or the limit check above checked the wrong thing.
        if (w, h) != (header.width, header.height) {
            return Err(DecodeError::Corrupt(format!(
                "JPEG frame headers disagree ({}x{} vs {w}x{h})",
                header.width, header.height
            )));
        }
        let mut pixels = vec![0u8; w as usize * h as usize * 3];
        decoder.decode_into(&mut pixels).map_err(zune_error)?;
        RgbImage::from_raw(w, h, pixels)
            .ok_or_else(|| DecodeError::Corrupt("JPEG decoder returned a short buffer".into()))
    })
}

fn dim_u32(v: usize) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError::Corrupt(format!("dimension {v} out of range")))
}

/// Runs a third-party decoder, turning a panic inside it into a typed error.
///
/// The decoders are fuzzed and this should never fire, but the input is untrusted and a
/// panic would otherwise take down the worker thread serving the request. (Only effective
/// with `panic = "unwind"`, the default.)
fn guard_panics<T>(
    format: &str,
    f: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(DecodeError::Corrupt(format!(
            "{format} decoder failed on malformed data"
        )))
    })
}

// ---------------------------------------------------------------------------------------
// PNG

#[derive(Debug, Clone)]
struct PngHeader {
    width: u32,
    height: u32,
    orientation: u8,
}

/// Reads IHDR and hops over chunks up to the first IDAT, collecting eXIf.
///
/// IHDR is always the first chunk, so the dimensions are known after 24 bytes; the hop over
/// the rest costs nothing (no decompression) and finds the orientation.
fn scan_png(bytes: &[u8]) -> Result<PngHeader, DecodeError> {
    let truncated = |detail: &str| DecodeError::Truncated {
        format: ImageFormat::Png,
        detail: detail.to_string(),
    };
    let ihdr = bytes
        .get(8..33)
        .ok_or_else(|| truncated("the data ends inside the header"))?;
    if &ihdr[4..8] != b"IHDR" || ihdr[0..4] != [0, 0, 0, 13] {
        return Err(DecodeError::Corrupt(
            "PNG does not start with an IHDR chunk".into(),
        ));
    }
    let width = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
    let height = u32::from_be_bytes([ihdr[12], ihdr[13], ihdr[14], ihdr[15]]);
    // The PNG spec caps dimensions at 2^31-1 and forbids 0.
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(DecodeError::Corrupt(format!(
            "PNG header has invalid dimensions {width}x{height}"
        )));
    }
    let mut orientation = 1;
    let mut pos = 33;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        if kind == b"IDAT" || kind == b"IEND" {
            break;
        }
        if kind == b"eXIf" {
            if let Some(data) = bytes.get(pos + 8..pos + 8 + len) {
                // The chunk holds a bare TIFF structure; some writers keep the JPEG-style
                // "Exif\0\0" prefix, which is harmless to accept.
                let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
                orientation = exif_orientation(tiff);
            }
            break;
        }
        pos = pos.saturating_add(12).saturating_add(len);
    }
    Ok(PngHeader {
        width,
        height,
        orientation,
    })
}

fn image_error(format: ImageFormat, e: ImageError) -> DecodeError {
    match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated {
                format,
                detail: "the data ends inside the compressed image data".into(),
            }
        }
        ImageError::Limits(l) => DecodeError::Corrupt(format!(
            "{format} needs more memory than its size allows ({l})"
        )),
        ImageError::Unsupported(u) => DecodeError::UnsupportedFeature(format!("{format}: {u}")),
        other => DecodeError::Corrupt(format!("{format}: {other}")),
    }
}

fn decode_png(
    bytes: &[u8],
    header: &PngHeader,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    // Second guard: the decoder enforces the side limit itself, and the allocation cap
    // bounds its buffers (output at up to 8 bytes/pixel for RGBA16, plus working room).
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(
        (u64::from(header.width) * u64::from(header.height))
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    let err = |e| image_error(ImageFormat::Png, e);
    let dynamic = guard_panics("PNG", || {
        let decoder = image::codecs::png::PngDecoder::with_limits(Cursor::new(bytes), image_limits)
            .map_err(err)?;
        let (w, h) = decoder.dimensions();
        if (w, h) != (header.width, header.height) {
            return Err(DecodeError::Corrupt(
                "PNG header read inconsistently".into(),
            ));
        }
        DynamicImage::from_decoder(decoder).map_err(err)
    })?;
    to_rgb8(dynamic)
}

/// Any decoded PNG layout to RGB8: alpha composited over white, 16-bit rounded to 8-bit.
///
/// White, not black, because transparent regions of logos and screenshots are meant to be
/// seen on a (usually white) page; black would invent dark shapes the viewer never saw.
fn to_rgb8(img: DynamicImage) -> Result<RgbImage, DecodeError> {
    let (w, h) = (img.width(), img.height());
    let pixels: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| {
                let v = over_white8(p[0], p[1]);
                [v, v, v]
            })
            .collect(),
        DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                [
                    over_white8(p[0], p[3]),
                    over_white8(p[1], p[3]),
                    over_white8(p[2], p[3]),
                ]
            })
            .collect(),
        DynamicImage::ImageLuma16(b) => b
            .as_raw()
            .iter()
            .flat_map(|&v| {
                let v = to8(v);
                [v, v, v]
            })
            .collect(),
        DynamicImage::ImageLumaA16(b) => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| {
                let v = over_white16(p[0], p[1]);
                [v, v, v]
            })
            .collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| to8(v)).collect(),
        DynamicImage::ImageRgba16(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                [
                    over_white16(p[0], p[3]),
                    over_white16(p[1], p[3]),
                    over_white16(p[2], p[3]),
                ]
            })
            .collect(),
        other => {
            return Err(DecodeError::UnsupportedColor(format!(
                "{:?}",
                other.color()
            )))
        }
    };
    RgbImage::from_raw(w, h, pixels)
        .ok_or_else(|| DecodeError::Corrupt("PNG decoder returned a short buffer".into()))
}

/// 16-bit to 8-bit, rounded to nearest (65535 ↦ 255, 0x8080 ↦ 128).
fn to8(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

/// `c` with alpha `a` over a white background, rounded.
fn over_white8(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
}

fn over_white16(c: u16, a: u16) -> u8 {
    let (c, a) = (u64::from(c), u64::from(a));
    // Composite at 16 bits, then round to 8: one rounding step, not two.
    let v16 = (c * a + 65535 * (65535 - a) + 32767) / 65535;
    ((v16 * 255 + 32767) / 65535) as u8
}

// ---------------------------------------------------------------------------------------
// Orientation

/// Applies an EXIF orientation (1..=8; anything else is treated as 1) to an image.
pub fn apply_orientation(img: RgbImage, orientation: u8) -> RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    if !(2..=8).contains(&orientation) || w == 0 || h == 0 {
        return img;
    }
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    // For output pixel (x, y), the source pixel is (sx, sy) = (ax*x + bx*y + cx,
    // ay*x + by*y + cy). Derived from the EXIF definitions: 2 mirror, 3 rotate 180,
    // 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 270° clockwise.
    let (wm, hm) = (w as isize - 1, h as isize - 1);
    let (ax, bx, cx, ay, by, cy): (isize, isize, isize, isize, isize, isize) = match orientation {
        2 => (-1, 0, wm, 0, 1, 0),
        3 => (-1, 0, wm, 0, -1, hm),
        4 => (1, 0, 0, 0, -1, hm),
        5 => (0, 1, 0, 1, 0, 0),
        6 => (0, 1, 0, -1, 0, hm),
        7 => (0, -1, wm, -1, 0, hm),
        _ => (0, -1, wm, 1, 0, 0), // 8
    };
    let src = &img.pixels;
    let mut out = vec![0u8; ow * oh * 3];
    // Walk the output in tiles so that the transposing cases read the source with some
    // cache locality (a plain row walk strides a whole source row per pixel).
    const TILE: usize = 32;
    for ty in (0..oh).step_by(TILE) {
        for tx in (0..ow).step_by(TILE) {
            for y in ty..(ty + TILE).min(oh) {
                let row = &mut out[y * ow * 3..(y + 1) * ow * 3];
                for x in tx..(tx + TILE).min(ow) {
                    let (xi, yi) = (x as isize, y as isize);
                    let sx = (ax * xi + bx * yi + cx) as usize;
                    let sy = (ay * xi + by * yi + cy) as usize;
                    let s = (sy * w + sx) * 3;
                    row[x * 3..x * 3 + 3].copy_from_slice(&src[s..s + 3]);
                }
            }
        }
    }
    RgbImage {
        width: ow as u32,
        height: oh as u32,
        pixels: out,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;

    /// The shared sample photos. Fails loudly when missing: these tests must not pass
    /// vacuously on a machine without the data.
    pub(crate) fn samples_dir() -> PathBuf {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/imagenet-samples");
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
        let px = |c: u8| [c, c + 100, c + 200];
        let img =
            RgbImage::from_raw(3, 2, b"abcdef".iter().flat_map(|&c| px(c)).collect()).unwrap();
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
            let img =
                decode(bytes, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
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
}
