//! JPEG: the marker walk that reads the header, checks limits and notices truncation
//! before anything is decoded, EXIF orientation from APP1, and the zune-jpeg decode to RGB8.

use image::metadata::Orientation;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use super::{dim_u32, guard_panics, DecodeError, DecodeLimits, ImageFormat, ImageInfo, RgbImage};

#[derive(Debug, Clone, Copy)]
pub(super) enum ScanDepth<'a> {
    /// Stop at the first start-of-scan: enough for dimensions and orientation.
    Headers,
    /// Check the frame size against the limits, then walk on to the EOI marker, to detect
    /// truncation before decoding.
    WholeFile(&'a DecodeLimits),
}

#[derive(Debug, Clone)]
pub(super) struct JpegHeader {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) components: u8,
    pub(super) orientation: u8,
    /// Offset of the end-of-image marker (its 0xFF), when the walk went that far.
    pub(super) eoi: Option<usize>,
    /// A progressive frame (SOF2, SOF6, SOF10, SOF14): several scans, separated by markers.
    pub(super) progressive: bool,
}

impl JpegHeader {
    pub(super) fn info(&self) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Jpeg,
            width: self.width,
            height: self.height,
            orientation: self.orientation,
        }
    }
}

pub(super) fn truncated_jpeg(detail: &str) -> DecodeError {
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
pub(super) fn scan_jpeg(bytes: &[u8], depth: ScanDepth) -> Result<JpegHeader, DecodeError> {
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
            0xD9 => {
                if let Some(f) = frame.as_mut() {
                    f.eoi = Some(pos - 2);
                }
                break; // EOI
            }
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
                    eoi: None,
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
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
pub(super) fn exif_orientation(tiff: &[u8]) -> u8 {
    Orientation::from_exif_chunk(tiff).map_or(1, Orientation::to_exif)
}

/// Maps a zune-jpeg error to ours.
pub(super) fn zune_error(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    use zune_jpeg::errors::DecodeErrors as Z;
    match e {
        Z::Unsupported(scheme) => DecodeError::UnsupportedFeature(format!("JPEG {scheme:?}")),
        Z::ExhaustedData | Z::FormatStatic("Premature end of buffer") => {
            truncated_jpeg("the decoder ran out of data")
        }
        other => DecodeError::Corrupt(format!("JPEG: {other}")),
    }
}

pub(super) fn decode_jpeg_zune(
    bytes: &[u8],
    header: &JpegHeader,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    // zune-jpeg reads past an early end-of-image marker as zero bits and invents the missing
    // rows, so a frame header claiming more pixels than the scan data holds would be
    // accepted. Without the marker it sees the data end instead, and strict mode reports
    // that. Strict mode also refuses small spec violations common in the wild: those files
    // are decoded again leniently, like browsers do.
    let Some(eoi) = header.eoi else {
        return zune_decode(bytes, header, limits, false);
    };
    // A progressive decoder reads marker to marker between its scans and must see the EOI
    // marker itself; a baseline one stops after the last block, so cutting before EOI
    // turns scan data that ends early into "ran out of data".
    let end = if header.progressive { eoi + 2 } else { eoi };
    match zune_decode(&bytes[..end], header, limits, true) {
        Ok(img) => Ok(img),
        Err(DecodeError::Truncated { .. }) => Err(truncated_jpeg(&format!(
            "the compressed data ends before the {}x{} pixels its header declares",
            header.width, header.height
        ))),
        Err(_) => zune_decode(bytes, header, limits, false),
    }
}

fn zune_decode(
    bytes: &[u8],
    header: &JpegHeader,
    limits: &DecodeLimits,
    strict: bool,
) -> Result<RgbImage, DecodeError> {
    let options = DecoderOptions::default()
        .set_strict_mode(strict)
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
