//! A rectangle of an image (`Region=x1,x2,y1,y2`, Image Search's syntax: pixels, left and
//! right edges first, then top and bottom, of the image as displayed, i.e. after its EXIF
//! orientation), and cutting it out of a decoded image.
//!
//! Not here: where the region comes from (the request, or the subject finder) or what is
//! embedded from it (`service::prepare`).

use std::fmt;

use super::decode::RgbImage;
use crate::rules::REGION_MIN_SIDE;

/// `x1 ≤ x < x2`, `y1 ≤ y < y2`, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x1: u32,
    pub x2: u32,
    pub y1: u32,
    pub y2: u32,
}

/// A region that is not four numbers, or that does not fit the image. `Display` is the
/// message for a person.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error(
        "Region \"{0}\" is not four whole numbers x1,x2,y1,y2 (pixels: left, right, top, \
         bottom, e.g. 10,300,20,240)"
    )]
    Syntax(String),
    #[error("Region {region}: {bound}")]
    OutOfImage { region: Region, bound: String },
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x1, self.x2, self.y1, self.y2)
    }
}

impl Region {
    /// Parses `x1,x2,y1,y2` (spaces around the numbers allowed).
    pub fn parse(text: &str) -> Result<Region, RegionError> {
        let bad = || RegionError::Syntax(text.chars().take(60).collect());
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [x1, x2, y1, y2] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |s: &str| -> Result<u32, RegionError> {
            if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        Ok(Region {
            x1: num(x1)?,
            x2: num(x2)?,
            y1: num(y1)?,
            y2: num(y2)?,
        })
    }

    pub fn width(&self) -> u32 {
        self.x2.saturating_sub(self.x1)
    }

    pub fn height(&self) -> u32 {
        self.y2.saturating_sub(self.y1)
    }

    /// Checks that the region lies inside a `width`×`height` image and is at least
    /// [`REGION_MIN_SIDE`] on each side; the error names the bound broken.
    pub fn check(&self, width: u32, height: u32) -> Result<(), RegionError> {
        let out = |bound: String| RegionError::OutOfImage {
            region: *self,
            bound,
        };
        if self.x1 >= self.x2 || self.y1 >= self.y2 {
            return Err(out(format!(
                "x1 must be less than x2 and y1 less than y2 (got x1={}, x2={}, y1={}, y2={})",
                self.x1, self.x2, self.y1, self.y2
            )));
        }
        if self.x2 > width {
            return Err(out(format!(
                "x2={} is beyond the image's width; it must be at most {width}",
                self.x2
            )));
        }
        if self.y2 > height {
            return Err(out(format!(
                "y2={} is beyond the image's height; it must be at most {height}",
                self.y2
            )));
        }
        if self.width() < REGION_MIN_SIDE || self.height() < REGION_MIN_SIDE {
            return Err(out(format!(
                "it is {}×{} px; each side must be at least {REGION_MIN_SIDE} px",
                self.width(),
                self.height()
            )));
        }
        Ok(())
    }

    /// The pixels inside the region (checked against the image first).
    pub fn crop(&self, img: &RgbImage) -> Result<RgbImage, RegionError> {
        self.check(img.width, img.height)?;
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in self.y1..self.y2 {
            let start = (y as usize * img.width as usize + self.x1 as usize) * 3;
            pixels.extend_from_slice(&img.pixels[start..start + w * 3]);
        }
        RgbImage::from_raw(self.width(), self.height(), pixels).ok_or_else(|| {
            RegionError::OutOfImage {
                region: *self,
                bound: "the cut-out has the wrong size".into(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32) -> RgbImage {
        let pixels = (0..w * h)
            .flat_map(|i| [(i % w) as u8, (i / w) as u8, 7])
            .collect();
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    #[test]
    fn parses_image_search_syntax() {
        assert_eq!(
            Region::parse("10, 300,20,240"),
            Ok(Region {
                x1: 10,
                x2: 300,
                y1: 20,
                y2: 240
            })
        );
        assert_eq!(Region::parse("1,2,3,4").unwrap().to_string(), "1,2,3,4");
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "a,2,3,4",
            "-1,2,3,4",
            "1.5,2,3,4",
            "9999999999,1,1,1",
        ] {
            let e = Region::parse(bad).unwrap_err();
            assert!(e.to_string().contains("x1,x2,y1,y2"), "{bad}: {e}");
        }
    }

    #[test]
    fn crops_and_names_the_bound_broken() {
        let img = image(200, 100);
        let r = Region::parse("50,150,10,60").unwrap();
        let c = r.crop(&img).unwrap();
        assert_eq!((c.width, c.height), (100, 50));
        assert_eq!(&c.pixels[..3], &[50, 10, 7], "top-left pixel is (x1, y1)");
        for (text, words) in [
            (
                "50,250,10,60",
                "x2=250 is beyond the image's width; it must be at most 200",
            ),
            (
                "50,150,10,101",
                "y2=101 is beyond the image's height; it must be at most 100",
            ),
            ("150,50,10,60", "x1 must be less than x2"),
            ("0,20,0,100", "each side must be at least 32 px"),
        ] {
            let e = Region::parse(text).unwrap().crop(&img).unwrap_err();
            assert!(e.to_string().contains(words), "{text}: {e}");
            assert!(
                e.to_string().starts_with(&format!("Region {text}: ")),
                "{e}"
            );
        }
    }
}
