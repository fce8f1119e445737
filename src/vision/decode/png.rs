//! PNG: the chunk hop that reads IHDR and eXIf before anything is decompressed, the decode
//! through `image`, and every PNG layout to RGB8 (alpha over white, 16-bit rounded).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError};

use super::jpeg::exif_orientation;
use super::{guard_panics, DecodeError, DecodeLimits, ImageFormat, RgbImage};

#[derive(Debug, Clone)]
pub(super) struct PngHeader {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) orientation: u8,
}

/// Reads IHDR and hops over chunks up to the first IDAT, collecting eXIf.
///
/// IHDR is always the first chunk, so the dimensions are known after 24 bytes; the hop over
/// the rest costs nothing (no decompression) and finds the orientation.
pub(super) fn scan_png(bytes: &[u8]) -> Result<PngHeader, DecodeError> {
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

pub(super) fn image_error(format: ImageFormat, e: ImageError) -> DecodeError {
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

pub(super) fn decode_png(
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
pub(super) fn to_rgb8(img: DynamicImage) -> Result<RgbImage, DecodeError> {
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
pub(super) fn to8(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

/// `c` with alpha `a` over a white background, rounded.
pub(super) fn over_white8(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
}

pub(super) fn over_white16(c: u16, a: u16) -> u8 {
    let (c, a) = (u64::from(c), u64::from(a));
    // Composite at 16 bits, then round to 8: one rounding step, not two.
    let v16 = (c * a + 65535 * (65535 - a) + 32767) / 65535;
    ((v16 * 255 + 32767) / 65535) as u8
}
