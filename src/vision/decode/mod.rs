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
//! Truncated files: a JPEG whose data ends before its EOI marker or before the pixels its
//! frame header declares, and a PNG whose data ends before its image data is complete, are
//! rejected as [`DecodeError::Truncated`]. The JPEG decoder would otherwise happily fill the
//! missing rows with grey, and a half-grey photo would be indexed with a meaningless
//! embedding; a client that sent an incomplete upload is better told to send it again. (Cost of this choice: the rare complete JPEG written without
//! an EOI marker is rejected too.)
//!
//! Colour management is out of scope: ICC profiles, gAMA and cHRM are ignored and samples
//! are taken as sRGB, as the reference preprocessing (PIL) does; CMYK is converted with the
//! plain (1 − C)(1 − K) formula, not through a profile.

mod jpeg;
mod orient;
mod png;

use std::panic::{catch_unwind, AssertUnwindSafe};

use jpeg::{decode_jpeg_zune, scan_jpeg, ScanDepth};
pub use orient::apply_orientation;
use png::{decode_png, scan_png};

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

#[cfg(test)]
pub(crate) mod tests;
