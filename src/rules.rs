//! The API's rules and limits, stated once: names, EntityId, ExtraData, image sizes and
//! sides, ImageUrl length, paging and `Limit` ranges, and the 0–10 `Score`. Spec §4–§5
//! where it speaks; where it is silent, the value this server chose (README, "What the
//! server decides").
//!
//! Every layer imports these (the API edge checks parameters, the service checks images,
//! the store re-checks the names it relies on, the client commands check before uploading);
//! none re-declares them. Not here: error codes and messages naming request parameters (the
//! API edge composes those), or how a rule is enforced.

use std::ops::RangeInclusive;

use crate::embedding::DbDescriptors;

/// The only API version served (`Version`, `x-acs-version`).
pub const API_VERSION: &str = "2020-03-20";

/// Most parameters one request may carry (query and form body together). The API's largest
/// action needs about 25 with every signing parameter; the cap is checked before any is
/// decoded, so a body of millions of empty pairs costs nothing.
pub const REQUEST_MAX_PARAMS: usize = 100;

/// Longest error message sent back. Messages quote what the client sent (a key id, the
/// StringToSign); a request of several megabytes must not come back as an error of the same
/// size.
pub const ERROR_MESSAGE_MAX_CHARS: usize = 4096;

/// Every action of API version 2020-03-20 (spec 4).
pub const KNOWN_ACTIONS: [&str; 7] = [
    "CreateImageDb",
    "ListImageDbs",
    "DeleteImageDb",
    "AddImage",
    "ListImages",
    "SearchImage",
    "DeleteImage",
];

/// Actions of ours beyond the public API (`api::actions`); signed and checked like the others.
pub const EXTENSION_ACTIONS: [&str; 4] = [
    "GetThumbnail",
    "UpdateImage",
    "ListDuplicates",
    "MarkNotDuplicate",
];

/// The one action of Alibaba Cloud's `openplatform` product (version 2019-12-19) served:
/// the official Tea SDK's `*_advance` calls ask it where to upload a local file (spec §6).
pub const AUTHORIZE_FILE_UPLOAD: &str = "AuthorizeFileUpload";
/// The version [`AUTHORIZE_FILE_UPLOAD`] is called with.
pub const OPEN_PLATFORM_VERSION: &str = "2019-12-19";

/// Whether `(version, action)` is served: every action of [`API_VERSION`], or
/// [`AUTHORIZE_FILE_UPLOAD`] of [`OPEN_PLATFORM_VERSION`].
pub fn is_served(version: &str, action: &str) -> bool {
    match version {
        API_VERSION => is_known_action(action),
        OPEN_PLATFORM_VERSION => action == AUTHORIZE_FILE_UPLOAD,
        _ => false,
    }
}

/// Whether `name` is an action of this API (or one of our [`EXTENSION_ACTIONS`]).
pub fn is_known_action(name: &str) -> bool {
    KNOWN_ACTIONS.contains(&name) || EXTENSION_ACTIONS.contains(&name)
}

// ---- names ----------------------------------------------------------------------------

/// Length of a database name (`Name`, `DbName`), in characters.
pub const DB_NAME_LEN: RangeInclusive<usize> = 2..=64;
/// The database-name rule, as a person reads it.
pub const DB_NAME_RULE: &str = "2 to 64 characters, lower-case letters, digits and _";

/// Whether `name` is a valid database name: lower-case ASCII letters, digits and `_`,
/// 2 to 64 characters.
pub fn is_valid_db_name(name: &str) -> bool {
    DB_NAME_LEN.contains(&name.len()) && name.bytes().all(is_name_byte)
}

/// Longest `EntityId`, in characters.
pub const ENTITY_ID_MAX_LEN: usize = 64;
/// The EntityId rule, as a person reads it.
pub const ENTITY_ID_RULE: &str = "1 to 64 characters, lower-case letters, digits and _";

/// Whether `id` is a valid `EntityId`: lower-case ASCII letters, digits and `_`, 1 to 64
/// characters.
pub fn is_valid_entity_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= ENTITY_ID_MAX_LEN && id.bytes().all(is_name_byte)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// Longest `ExtraData`, in characters (not bytes).
pub const EXTRA_DATA_MAX_CHARS: usize = 512;

/// Why an `ExtraData` value is refused. `Display` is the message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtraDataError {
    #[error("ExtraData is {chars} characters long; at most {EXTRA_DATA_MAX_CHARS} are allowed")]
    TooLong { chars: usize },
    #[error("ExtraData contains control characters; use printable text")]
    ControlCharacters,
}

/// Checks `ExtraData`: at most [`EXTRA_DATA_MAX_CHARS`] characters, no control characters
/// other than line feed and tab.
pub fn check_extra_data(v: &str) -> Result<(), ExtraDataError> {
    let chars = v.chars().count();
    if chars > EXTRA_DATA_MAX_CHARS {
        return Err(ExtraDataError::TooLong { chars });
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ExtraDataError::ControlCharacters);
    }
    Ok(())
}

// ---- attributes and Filter (ours, Image Search's names) -------------------------------

/// Integer attributes per image: `IntAttr`, `IntAttr2`, `IntAttr3`, `IntAttr4`.
pub const INT_ATTR_SLOTS: usize = 4;
/// String attributes per image: `StrAttr` … `StrAttr4`.
pub const STR_ATTR_SLOTS: usize = 4;
/// Longest string attribute, in characters.
pub const STR_ATTR_MAX_CHARS: usize = 128;
/// Integer attributes are whole numbers JavaScript reads exactly (±(2^53 − 1)), so the
/// console and JSON clients never see one rounded.
pub const INT_ATTR_MAX: i64 = (1 << 53) - 1;
/// Longest `Filter` expression, in characters (Image Search's limit).
pub const FILTER_MAX_CHARS: usize = 4096;
/// Deepest nesting of parentheses in a `Filter`.
pub const FILTER_MAX_DEPTH: usize = 32;

/// Smallest side of a `Region` (ours, Image Search's syntax), in pixels: a smaller cut-out
/// holds too little to embed.
pub const REGION_MIN_SIDE: u32 = 32;
/// The parameter naming a part of a new image to embed (`x1,x2,y1,y2`, ours).
pub const REGION_PARAM: &str = "Region";
/// The parameter asking for the main subject to be found and embedded (`true`/`false`,
/// ours); the API refuses it together with `Region` and with a stored-image query.
pub const CROP_PARAM: &str = "Crop";

// ---- images ---------------------------------------------------------------------------

/// Spec §4, AddImage: the image must be at most 2 MB.
pub const ADD_IMAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Spec §4, SearchImage: the query image must be at most 3 MB.
pub const SEARCH_IMAGE_MAX_BYTES: usize = 3 * 1024 * 1024;

// ---- uploads (the SDK's Advance calls) ------------------------------------------------

/// Largest uploaded object: the largest image any action takes ([`SEARCH_IMAGE_MAX_BYTES`]);
/// AddImage still applies its own, smaller limit when it reads one.
pub const UPLOAD_MAX_BYTES: usize = SEARCH_IMAGE_MAX_BYTES;
/// How long an upload policy from AuthorizeFileUpload may be used (ours; the SDK uploads
/// at once).
pub const UPLOAD_POLICY_SECS: i64 = 15 * 60;
/// How long an uploaded object is kept for AddImage/SearchImage to read (ours): long
/// enough for a retried call, short enough that the uploads do not become a second store.
pub const UPLOAD_OBJECT_SECS: i64 = 60 * 60;
/// Bytes of unexpired uploads one access key may hold at once (ours).
pub const UPLOAD_TENANT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Each side of an image must be strictly greater than this many pixels…
pub const MIN_SIDE_EXCLUSIVE: u32 = 128;
/// …and strictly less than this many.
pub const MAX_SIDE_EXCLUSIVE: u32 = 1024;

/// Whether a `width`×`height` image has sides the API accepts.
pub fn sides_ok(width: u32, height: u32) -> bool {
    let ok = |side: u32| side > MIN_SIDE_EXCLUSIVE && side < MAX_SIDE_EXCLUSIVE;
    ok(width) && ok(height)
}

/// Longest `ImageUrl` accepted. The spec sets none; this only keeps absurd input out of
/// logs and error messages.
pub const IMAGE_URL_MAX_LEN: usize = 4096;

// ---- paging and Limit -----------------------------------------------------------------

/// ListImages `Limit`: 1 to this, …
pub const LIST_MAX_LIMIT: u32 = 1000;
/// … and this when absent.
pub const LIST_DEFAULT_LIMIT: u32 = 20;
/// Offset+Limit paging reaches only this many records; beyond, a Token is needed.
pub const OFFSET_PAGING_LIMIT: u64 = 2000;
/// SearchImage `Limit`: 1 to this (required).
pub const SEARCH_MAX_LIMIT: usize = 1000;

// ---- duplicate review (ours) -------------------------------------------------------

/// Results asked per image when grouping copies (`ListDuplicates` `Neighbours`, `imgsearch
/// dedup --neighbours`): more finds larger groups in one step, …
pub const DUPLICATE_NEIGHBOURS_DEFAULT: u32 = 20;
/// … from 2 to this.
pub const DUPLICATE_NEIGHBOURS_MAX: u32 = 1000;
/// The longest one `ListDuplicates` call searches before answering with what it has (the
/// console calls again, showing progress, until `Complete`).
pub const DUPLICATE_REVIEW_BUDGET_MS: u64 = 3000;
/// `ListDuplicates` groups per page (`Limit`): 1 to this, …
pub const DUPLICATE_GROUPS_MAX_LIMIT: u32 = 200;
/// … and this when absent.
pub const DUPLICATE_GROUPS_DEFAULT_LIMIT: u32 = 20;
/// `DeleteImage` with `DataId` (ours): at most this many comma-separated ids per call.
pub const DELETE_DATA_IDS_MAX: usize = 100;

// ---- what a database indexes (ours) --------------------------------------------------

/// CreateImageDb's optional `Descriptors` parameter and ListImageDbs' field of that name.
pub const DESCRIPTORS_PARAM: &str = "Descriptors";
/// Its values, by what they choose.
pub const DESCRIPTORS_RULE: &str = "both (the default: same picture and look-alikes), copy \
     (the same picture, edited or not) or similar (look-alikes only)";

/// The wire name of a descriptor set.
pub fn descriptors_name(d: DbDescriptors) -> &'static str {
    match d {
        DbDescriptors::Both => "both",
        DbDescriptors::Copy => "copy",
        DbDescriptors::Similar => "similar",
    }
}

/// Parses a `Descriptors` value (any case).
pub fn parse_descriptors(v: &str) -> Option<DbDescriptors> {
    [
        DbDescriptors::Both,
        DbDescriptors::Copy,
        DbDescriptors::Similar,
    ]
    .into_iter()
    .find(|&d| descriptors_name(d).eq_ignore_ascii_case(v.trim()))
}

// ---- score ----------------------------------------------------------------------------

/// The highest `Score`: the same image.
pub const SCORE_MAX: f32 = 10.0;

/// The API's `Score`: cosine mapped linearly onto 0–10 (`10 · max(cosine, 0)`), so the
/// same image (cosine 1) scores 10. Embeddings are L2-normalised averages of ReLU6
/// activations, hence non-negative and cosine ∈ [0, 1] in practice; the clamp only guards
/// rounding. Cosines within 1e-5 of 1 (float noise on identical images) give exactly 10.
pub fn score(cosine: f32) -> f32 {
    if cosine >= 1.0 - 1e-5 {
        SCORE_MAX
    } else {
        (cosine.max(0.0) * SCORE_MAX).min(SCORE_MAX)
    }
}

/// Weight of the semantic cosine in the copy similarity `c + w·s` (`copy_similarity`):
/// the copy descriptor decides, "looks alike" breaks its near-ties. Chosen on `bench
/// copies`' tuning seed (README, "Search quality").
pub const COPY_SEMANTIC_WEIGHT: f32 = 0.25;
/// Copy similarity from which two images are the same picture, edited or not; chosen on
/// the tuning seed, checked on the held-out one.
pub const SAME_PICTURE_SIMILARITY: f32 = 0.5;
/// Every same picture scores at least this; every other image less.
pub const SAME_PICTURE_SCORE: f32 = 8.0;

/// The copy similarity of a match: copy cosine `c` plus [`COPY_SEMANTIC_WEIGHT`] times the
/// semantic cosine `s` (0 when absent); at most `1 + w`.
pub fn copy_similarity(copy: f32, semantic: Option<f32>) -> f32 {
    copy + COPY_SEMANTIC_WEIGHT * semantic.unwrap_or(0.0).max(0.0)
}

/// The `Score` of a database indexing `descriptors`, from the match's semantic cosine and
/// copy-descriptor cosine (either absent: not indexed, or an image stored before copy
/// descriptors existed).
///
/// * Semantic only (`Similar`): [`score`], the 2020-03-20 scale.
/// * With a copy cosine: the copy similarity `f` ([`copy_similarity`]) mapped linearly onto
///   0–[`SAME_PICTURE_SCORE`] `S` below [`SAME_PICTURE_SIMILARITY`] `T`, and onto `S`–10 from
///   it up to its maximum: one monotone scale, so ranking by Score is ranking by `f`, and
///   `Score ≥ S` means "the same picture".
/// * Without one (an image stored before copy descriptors, or a server without the copy
///   model): `S · s`, below `S`, since only the copy descriptor may claim "same picture".
/// * The same file scores 10: a semantic cosine within 1e-5 of 1 (with a copy cosine that
///   reaches the same-picture threshold, when there is one), or a copy cosine within 1e-5
///   of 1.
pub fn fused_score(descriptors: DbDescriptors, semantic: Option<f32>, copy: Option<f32>) -> f32 {
    // The same file gives semantic cosine 1 (its stored copy descriptor comes from the
    // thumbnail, so its copy cosine is high but not 1). Near-blank images (smooth
    // gradients) can share one semantic embedding without being the same picture, so with
    // a copy cosine it must say "same picture" too.
    let identical = |c: f32| c >= 1.0 - 1e-5;
    let copy_agrees = copy.is_none_or(|c| c >= SAME_PICTURE_SIMILARITY);
    if semantic.is_some_and(identical) && copy_agrees || copy.is_some_and(identical) {
        return SCORE_MAX;
    }
    if descriptors == DbDescriptors::Similar {
        return semantic.map_or(0.0, score);
    }
    let (t, s_min) = (SAME_PICTURE_SIMILARITY, SAME_PICTURE_SCORE);
    let Some(c) = copy else {
        return (s_min * semantic.unwrap_or(0.0).max(0.0)).min(s_min - 1e-4);
    };
    let f = copy_similarity(c, semantic).max(0.0);
    if f >= t {
        let top = 1.0 + COPY_SEMANTIC_WEIGHT;
        (s_min + (SCORE_MAX - s_min) * (f - t) / (top - t)).min(SCORE_MAX)
    } else {
        s_min * f / t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_score_bands_and_order() {
        let both = DbDescriptors::Both;
        // The same file: 10; a copy cosine decides over a degenerate semantic one.
        assert_eq!(fused_score(both, Some(1.0), Some(1.0)), SCORE_MAX);
        assert_eq!(fused_score(both, None, Some(0.999_999)), SCORE_MAX);
        assert!(fused_score(both, Some(1.0), Some(0.2)) < SAME_PICTURE_SCORE);
        assert_eq!(
            fused_score(both, Some(1.0), Some(0.96)),
            SCORE_MAX,
            "stored from the thumbnail"
        );
        assert_eq!(fused_score(both, Some(1.0), None), SCORE_MAX);
        // "Same picture" from the threshold on, monotone in c + w·s, continuous at it.
        let at = |s: f32, c: f32| fused_score(both, Some(s), Some(c));
        let t = SAME_PICTURE_SIMILARITY;
        assert!((at(0.0, t) - SAME_PICTURE_SCORE).abs() < 1e-4);
        assert!(at(0.0, t - 0.01) < SAME_PICTURE_SCORE);
        assert!(at(0.3, 0.6) > at(0.9, 0.3), "copy beats looks-alike");
        assert!(
            at(0.9, 0.6) > at(0.3, 0.6),
            "looks-alike breaks copy near-ties"
        );
        let mut last = -1.0;
        for i in 0..=100 {
            let c = i as f32 / 100.0 * 0.999;
            let v = at(0.5, c);
            assert!(v >= last && (0.0..=SCORE_MAX).contains(&v), "{c} {v}");
            last = v;
        }
        // An image without a copy descriptor stays below "same picture".
        assert!(fused_score(both, Some(0.99), None) < SAME_PICTURE_SCORE);
        // Semantic-only databases keep the 2020-03-20 scale.
        assert!((fused_score(DbDescriptors::Similar, Some(0.9), None) - 9.0).abs() < 1e-5);
        assert_eq!(fused_score(DbDescriptors::Similar, None, None), 0.0);
        // Copy-only: no semantic term.
        assert!(
            (fused_score(DbDescriptors::Copy, None, Some(t)) - SAME_PICTURE_SCORE).abs() < 1e-4
        );
    }

    #[test]
    fn descriptors_parse_any_case_and_name_round_trips() {
        for d in [
            DbDescriptors::Both,
            DbDescriptors::Copy,
            DbDescriptors::Similar,
        ] {
            assert_eq!(parse_descriptors(descriptors_name(d)), Some(d));
            assert_eq!(
                parse_descriptors(&descriptors_name(d).to_uppercase()),
                Some(d)
            );
        }
        assert_eq!(parse_descriptors("all"), None);
        assert_eq!(parse_descriptors(""), None);
    }

    #[test]
    fn db_names() {
        for good in ["ab", "shop_1", &"a".repeat(64)] {
            assert!(is_valid_db_name(good), "{good:?}");
        }
        for bad in ["", "a", "Shop", "a-b", "a b", "名字", &"a".repeat(65)] {
            assert!(!is_valid_db_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn entity_ids() {
        for good in ["a", "sku_1", &"z".repeat(64)] {
            assert!(is_valid_entity_id(good), "{good:?}");
        }
        for bad in ["", "A", "a-b", "é", &"z".repeat(65)] {
            assert!(!is_valid_entity_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn extra_data() {
        assert_eq!(check_extra_data("red shoe\n\tsize 42"), Ok(()));
        assert_eq!(check_extra_data(&"é".repeat(512)), Ok(()));
        assert_eq!(
            check_extra_data(&"é".repeat(513)),
            Err(ExtraDataError::TooLong { chars: 513 })
        );
        assert_eq!(
            check_extra_data("a\u{1}b"),
            Err(ExtraDataError::ControlCharacters)
        );
    }

    #[test]
    fn sides() {
        assert!(sides_ok(129, 1023));
        assert!(!sides_ok(128, 500));
        assert!(!sides_ok(500, 1024));
    }

    #[test]
    fn score_maps_cosine_to_0_10() {
        assert_eq!(score(1.0), 10.0);
        assert_eq!(score(0.999_999), 10.0);
        assert_eq!(score(-0.3), 0.0);
        assert!(score(0.5) < score(0.6));
        assert!((score(0.5) - 5.0).abs() < 1e-6);
    }
}
