//! The seven actions of the 2020-03-20 API: business parameters checked against the spec's
//! rules, the service called, the response body built with the spec's exact field names.
//! One function per action; `dispatch` picks it. Errors leave as `ApiError`.
//!
//! Extensions of ours, invisible to clients that do not use them: AddImage and SearchImage
//! accept `ImageContent` (base64 image bytes) instead of `ImageUrl`, and the extra action
//! `GetThumbnail` (DbName, DataId) returns a stored image's JPEG thumbnail as base64;
//! SearchImage also searches with a stored image (`DataId`, or `EntityId`: its first image);
//! `UpdateImage` (DbName, DataId or EntityId, ExtraData and/or attributes) changes them
//! without re-embedding; AddImage takes attributes (`IntAttr`…, `StrAttr`…), SearchImage and
//! ListImages a `Filter` on them, and both list each image's attributes (`api::attributes`);
//! CreateImageDb takes `Descriptors` (what the database indexes) and ListImageDbs shows
//! it, with `CopyModel` (whether this server computes copy descriptors) and `SubjectModel`
//! (whether `Crop=true` can run). AddImage and SearchImage take `Region=x1,x2,y1,y2` (embed
//! that part) or `Crop=true` (find the main subject); `Data.Region` echoes the part used and,
//! with Crop, `Data.Crop` says whether a subject was found. Duplicate review
//! (`ListDuplicates`, `MarkNotDuplicate`, `DeleteImage` by `DataId`) is in `api::duplicates`.

use serde_json::{json, Value};

use super::attributes;
use super::duplicates;
use super::error::ApiError;
use super::params::Params;
use crate::rules::{
    check_extra_data, descriptors_name, is_valid_db_name, is_valid_entity_id, parse_descriptors,
    CROP_PARAM, DB_NAME_RULE, DESCRIPTORS_PARAM, DESCRIPTORS_RULE, ENTITY_ID_RULE,
    LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, REGION_PARAM, SEARCH_MAX_LIMIT,
};
use crate::service::images::{
    AddImage, ImageService, ImageSource, ListImages, Part, SearchImage, SearchQuery, StoredImage,
};
use crate::service::ServiceError;
use crate::store::{DataId, DbDescriptors, ImageRecord, Order};
use crate::vision::region::Region;
use crate::vision::subject::Subject;

/// Runs `action` for `tenant`; returns the `Data` member (or `None` for actions whose
/// response is only a RequestId).
pub async fn dispatch(
    service: &ImageService,
    tenant: &str,
    action: &str,
    params: &Params,
) -> Result<Option<Value>, ApiError> {
    match action {
        "CreateImageDb" => {
            let name = db_name(params, "Name")?;
            let descriptors = descriptors(params)?;
            service
                .create_db(tenant, &name, descriptors)
                .await
                .map_err(map_err)?;
            Ok(None)
        }
        "ListImageDbs" => {
            let dbs = service.list_dbs(tenant).await.map_err(map_err)?;
            // Ours beside the spec's Name: what each database indexes, and whether this
            // server can compute copy descriptors at all (SDKs ignore unknown fields).
            let list: Vec<Value> = dbs
                .iter()
                .map(|d| json!({"Name": d.name, (DESCRIPTORS_PARAM): descriptors_name(d.descriptors)}))
                .collect();
            let copy_model = if service.has_copy_model() {
                "loaded"
            } else {
                "absent"
            };
            let subject_model = if service.has_subject_model() {
                "loaded"
            } else {
                "absent"
            };
            Ok(Some(json!({
                "DbList": list,
                "CopyModel": copy_model,
                "SubjectModel": subject_model,
            })))
        }
        "DeleteImageDb" => {
            let name = db_name(params, "Name")?;
            service.delete_db(tenant, &name).await.map_err(map_err)?;
            Ok(None)
        }
        "AddImage" => {
            let req = AddImage {
                db: db_name(params, "DbName")?,
                entity_id: entity_id(params)?,
                extra_data: extra_data(params)?,
                source: image_source(params)?,
                attributes: attributes::attributes(params)?,
                part: part(params)?,
            };
            let part = req.part;
            let (record, subject) = service.add_image(tenant, req).await.map_err(map_err)?;
            let mut data = json!({ "DataId": record.data_id.to_string() });
            echo_part(&mut data, part, subject);
            Ok(Some(data))
        }
        "ListImages" => {
            let req = ListImages {
                db: db_name(params, "DbName")?,
                offset: int_param(params, "Offset", 0, u32::MAX as u64)?.unwrap_or(0),
                limit: int_param(params, "Limit", 1, LIST_MAX_LIMIT as u64)?
                    .map_or(LIST_DEFAULT_LIMIT, |l| l as u32),
                token: params.get_non_empty("Token").map(str::to_string),
                order: order(params)?,
                entity_id_prefix: params.get_non_empty("EntityIdPrefix").map(str::to_string),
                filter: attributes::filter(params)?,
            };
            let list = service.list_images(tenant, req).await.map_err(map_err)?;
            let images: Vec<Value> = list
                .images
                .iter()
                .map(|r| {
                    let mut v = json!({
                        "DataId": r.data_id.to_string(),
                        "EntityId": r.entity_id,
                        "ExtraData": r.extra_data,
                        "CreatedAt": r.created_at,
                        "UpdatedAt": r.updated_at,
                    });
                    attributes::render(&r.attributes, &mut v);
                    v
                })
                .collect();
            let mut data = json!({ "ImageList": images, "TotalCount": list.total_count });
            if let Some(token) = list.token {
                data["Token"] = Value::String(token);
            }
            Ok(Some(data))
        }
        "SearchImage" => {
            let limit = int_param(params, "Limit", 1, SEARCH_MAX_LIMIT as u64)?
                .ok_or_else(|| required("Limit", "an integer from 1 to 1000"))?;
            let query = search_query(params)?;
            let part = part(params)?;
            if part != Part::Whole && matches!(query, SearchQuery::Stored(_)) {
                let name = if part == Part::Subject {
                    "Crop=true finds the subject of"
                } else {
                    "Region cuts a part out of"
                };
                return Err(ApiError::InvalidParameter(format!(
                    "{name} a new image (ImageUrl or ImageContent); it cannot be combined with \
                     DataId or EntityId"
                )));
            }
            let req = SearchImage {
                db: db_name(params, "DbName")?,
                query,
                limit: limit as usize,
                min_score: float_param(params, "MinScore", 0.0, 10.0)?,
                distinct_entity: bool_param(params, "DistinctEntity")?.unwrap_or(false),
                filter: attributes::filter(params)?.map(|f| f.filter),
                part,
            };
            let (matches, subject) = service.search_image(tenant, req).await.map_err(map_err)?;
            let list: Vec<Value> = matches
                .iter()
                .map(|m| {
                    let mut v = image_json(&m.record);
                    v["Score"] = json!(m.score);
                    v
                })
                .collect();
            let mut data = json!({ "MatchList": list });
            echo_part(&mut data, part, subject);
            Ok(Some(data))
        }
        "DeleteImage" if params.get_non_empty("DataId").is_some() => {
            duplicates::delete_by_data_id(service, tenant, params).await
        }
        "ListDuplicates" => duplicates::list_duplicates(service, tenant, params).await,
        "MarkNotDuplicate" => duplicates::mark_not_duplicate(service, tenant, params).await,
        "DeleteImage" => {
            let db = db_name(params, "DbName")?;
            let entity = entity_id(params)?;
            service
                .delete_entity(tenant, &db, &entity)
                .await
                .map_err(map_err)?;
            Ok(None)
        }
        "GetThumbnail" => {
            let db = db_name(params, "DbName")?;
            let id = data_id(params)?;
            let jpeg = service
                .thumbnail(tenant, &db, id)
                .await
                .map_err(map_err)?
                .ok_or_else(|| {
                    ApiError::InvalidParameter(format!(
                        "DataId {id} is not an image of database \"{db}\"; list them with ListImages"
                    ))
                })?;
            use base64::Engine as _;
            Ok(Some(json!({
                "DataId": id.to_string(),
                "ContentType": "image/jpeg",
                "ImageContent": base64::engine::general_purpose::STANDARD.encode(jpeg),
            })))
        }
        "UpdateImage" => {
            let db = db_name(params, "DbName")?;
            let which =
                match stored_image(params)? {
                    Some(which) => which,
                    None => return Err(required(
                        "DataId",
                        "the image to change: its DataId, or EntityId for every image of an entity",
                    )),
                };
            let attrs = attributes::attributes(params)?;
            if params.get("ExtraData").is_none() && attrs.is_empty() {
                return Err(required(
                    "ExtraData",
                    "the new ExtraData (send it empty to clear it) and/or IntAttr…IntAttr4, \
                     StrAttr…StrAttr4; images are not re-embedded",
                ));
            }
            let extra = match params.get("ExtraData") {
                Some(_) => Some(extra_data(params)?),
                None => None,
            };
            let updated = service
                .update_image(tenant, &db, which, extra, attrs)
                .await
                .map_err(map_err)?;
            Ok(Some(json!({ "Updated": updated })))
        }
        other => Err(ApiError::InvalidActionNotFound(other.to_string())),
    }
}

/// What of a new image to use: `Region=x1,x2,y1,y2` (ours, Image Search's syntax; checked
/// against the image later) or `Crop=true` (ours: the main subject), not both.
fn part(params: &Params) -> Result<Part, ApiError> {
    let region = params
        .get_non_empty(REGION_PARAM)
        .map(Region::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
    let crop = bool_param(params, CROP_PARAM)?.unwrap_or(false);
    match (region, crop) {
        (Some(_), true) => Err(ApiError::InvalidParameter(format!(
            "{CROP_PARAM}=true finds the region itself; send either {REGION_PARAM} or \
             {CROP_PARAM}=true, not both"
        ))),
        (Some(r), false) => Ok(Part::Region(r)),
        (None, true) => Ok(Part::Subject),
        (None, false) => Ok(Part::Whole),
    }
}

/// `Data.Region`: the part of the image that was embedded, in its pixels ("x1,x2,y1,y2"),
/// when it was not the whole image; with `Crop=true`, `Data.Crop`: "subject" when a box
/// was found, else "whole image: " and why.
fn echo_part(data: &mut Value, part: Part, subject: Option<Subject>) {
    let used = match (part, subject) {
        (Part::Region(r), _) | (_, Some(Subject::Found(r))) => Some(r),
        _ => None,
    };
    if let Some(r) = used {
        data[REGION_PARAM] = Value::String(r.to_string());
    }
    match subject {
        Some(Subject::Found(_)) => data[CROP_PARAM] = Value::String("subject".into()),
        Some(Subject::None(why)) => {
            data[CROP_PARAM] = Value::String(format!("whole image: {why}"));
        }
        None => {}
    }
}

pub(super) fn data_id(params: &Params) -> Result<DataId, ApiError> {
    let v = params
        .get_non_empty("DataId")
        .ok_or_else(|| required("DataId", "the DataId of an image, as ListImages returns it"))?;
    v.parse::<DataId>().map_err(|_| {
        ApiError::InvalidParameter(format!(
            "DataId \"{v}\" is invalid: use a DataId exactly as AddImage or ListImages returned it"
        ))
    })
}

/// An image as SearchImage's matches (and ListDuplicates' members) show it: DataId,
/// EntityId, ExtraData, ImageUrl and the attributes it has.
pub(super) fn image_json(record: &ImageRecord) -> Value {
    let mut v = json!({
        "DataId": record.data_id.to_string(),
        "EntityId": record.entity_id,
        "ExtraData": record.extra_data,
        "ImageUrl": record.image_url,
    });
    attributes::render(&record.attributes, &mut v);
    v
}

/// The one place service errors become API codes.
pub fn map_err(e: ServiceError) -> ApiError {
    let msg = e.to_string();
    match e {
        ServiceError::InvalidParameter(_)
        | ServiceError::DbNotFound(_)
        | ServiceError::DbExists(_)
        | ServiceError::ImageNotFound(_) => ApiError::InvalidParameter(msg),
        ServiceError::ImageFetch(f) => ApiError::from_fetch(&f),
        ServiceError::UploadNotFound(_) => ApiError::InvalidImageDownload(msg),
        ServiceError::UploadQuota(_) => ApiError::ImageQuotaExceeded(msg),
        ServiceError::StorageFull(_) => ApiError::InsufficientStorage(msg),
        ServiceError::DatabaseQuota(_) => ApiError::DatabaseQuotaExceeded(msg),
        ServiceError::ImageQuota(_) => ApiError::ImageQuotaExceeded(msg),
        ServiceError::ImageFormat(_) => ApiError::InvalidImageFormat(msg),
        ServiceError::ImageResolution(_) => ApiError::InvalidImageResolution(msg),
        ServiceError::ImageSize(_) => ApiError::InvalidImageSize(msg),
        ServiceError::Busy(_)
        | ServiceError::StoreUnavailable(_)
        | ServiceError::CopyModelMissing(_)
        | ServiceError::SubjectModelMissing => ApiError::ServiceUnavailable(msg),
        ServiceError::Algo(_) => ApiError::AlgoError(msg),
        ServiceError::Internal(_) => ApiError::Internal(msg),
    }
}

pub(super) fn required(name: &str, rule: &str) -> ApiError {
    ApiError::InvalidParameter(format!("{name} is required: {rule}"))
}

pub(super) fn db_name(params: &Params, name: &str) -> Result<String, ApiError> {
    let v = params
        .get_non_empty(name)
        .ok_or_else(|| required(name, DB_NAME_RULE))?;
    if !is_valid_db_name(v) {
        return Err(ApiError::InvalidParameter(format!(
            "{name} \"{v}\" is invalid: use {DB_NAME_RULE}"
        )));
    }
    Ok(v.to_string())
}

fn entity_id(params: &Params) -> Result<String, ApiError> {
    let v = params
        .get_non_empty("EntityId")
        .ok_or_else(|| required("EntityId", ENTITY_ID_RULE))?;
    if !is_valid_entity_id(v) {
        return Err(ApiError::InvalidParameter(format!(
            "EntityId \"{v}\" is invalid: use {ENTITY_ID_RULE}"
        )));
    }
    Ok(v.to_string())
}

fn extra_data(params: &Params) -> Result<String, ApiError> {
    let v = params.get("ExtraData").unwrap_or("");
    check_extra_data(v).map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
    Ok(v.to_string())
}

/// The image of AddImage/SearchImage: `ImageUrl` (the public API) or `ImageContent` (our
/// upload extension: base64 of the image bytes), exactly one of the two.
fn image_source(params: &Params) -> Result<ImageSource, ApiError> {
    match (
        params.get_non_empty("ImageUrl"),
        params.get_non_empty("ImageContent"),
    ) {
        (Some(url), None) => Ok(ImageSource::Url(url.to_string())),
        (None, Some(content)) => Ok(ImageSource::Bytes(decode_image_content(content)?)),
        (Some(_), Some(_)) => Err(ApiError::InvalidParameter(
            "ImageUrl and ImageContent were both given; send exactly one: the URL of the image, \
             or its bytes as base64 in ImageContent"
                .into(),
        )),
        (None, None) => Err(required(
            "ImageUrl",
            "the http(s) URL of a JPEG or PNG image (or send the image itself, base64-encoded, in ImageContent)",
        )),
    }
}

/// What SearchImage searches with: a new image (`ImageUrl` or `ImageContent`), or (our
/// extension) a stored one, by `DataId` or by `EntityId` (its first image). Exactly one.
fn search_query(params: &Params) -> Result<SearchQuery, ApiError> {
    let given_id = params.get_non_empty("DataId");
    let entity = params.get_non_empty("EntityId");
    let new_image = ["ImageUrl", "ImageContent"]
        .into_iter()
        .find(|n| params.get_non_empty(n).is_some());
    let given: Vec<&str> = [
        new_image,
        given_id.map(|_| "DataId"),
        entity.map(|_| "EntityId"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(ApiError::InvalidParameter(format!(
            "{} were both given; SearchImage searches with exactly one of: ImageUrl or \
             ImageContent (a new image), DataId or EntityId (an image already in the database)",
            given.join(" and ")
        )));
    }
    match stored_image(params)? {
        Some(stored) => Ok(SearchQuery::Stored(stored)),
        None => image_source(params).map(SearchQuery::Image),
    }
}

/// A stored image named by `DataId` or `EntityId` (not both); `None` when neither is given.
fn stored_image(params: &Params) -> Result<Option<StoredImage>, ApiError> {
    match (
        params.get_non_empty("DataId"),
        params.get_non_empty("EntityId"),
    ) {
        (Some(_), Some(_)) => Err(ApiError::InvalidParameter(
            "DataId and EntityId were both given; name the image by exactly one of them".into(),
        )),
        (Some(_), None) => Ok(Some(StoredImage::DataId(data_id(params)?))),
        (None, Some(_)) => Ok(Some(StoredImage::Entity(entity_id(params)?))),
        (None, None) => Ok(None),
    }
}

/// Decodes `ImageContent`: standard base64 (RFC 4648 §4, `+/`), padding optional, ASCII
/// whitespace (line breaks from `base64` tools) ignored.
fn decode_image_content(content: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = if content.bytes().any(|b| b.is_ascii_whitespace()) {
        content
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect()
    } else {
        content.to_string()
    };
    ENGINE.decode(compact.as_bytes()).map_err(|e| {
        ApiError::InvalidParameter(format!(
            "ImageContent is not valid base64 ({e}); send the image bytes encoded with the \
             standard base64 alphabet (A-Z a-z 0-9 + /), form-urlencoded in the body"
        ))
    })
}

/// CreateImageDb's optional `Descriptors` (ours): both when absent.
fn descriptors(params: &Params) -> Result<DbDescriptors, ApiError> {
    match params.get_non_empty(DESCRIPTORS_PARAM) {
        None => Ok(DbDescriptors::default()),
        Some(v) => parse_descriptors(v).ok_or_else(|| {
            ApiError::InvalidParameter(format!(
                "{DESCRIPTORS_PARAM} \"{v}\" is invalid: use {DESCRIPTORS_RULE}"
            ))
        }),
    }
}

fn order(params: &Params) -> Result<Order, ApiError> {
    match params.get_non_empty("Order") {
        None => Ok(Order::Desc),
        Some(o) if o.eq_ignore_ascii_case("desc") => Ok(Order::Desc),
        Some(o) if o.eq_ignore_ascii_case("asc") => Ok(Order::Asc),
        Some(o) => Err(ApiError::InvalidParameter(format!(
            "Order \"{o}\" is invalid: use asc or desc"
        ))),
    }
}

/// An optional integer parameter within `[min, max]`.
pub(super) fn int_param(
    params: &Params,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    let Some(v) = params.get_non_empty(name) else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::InvalidParameter(format!(
            "{name} \"{v}\" is invalid: use an integer from {min} to {max}"
        ))),
    }
}

/// An optional float parameter within `[min, max]`.
pub(super) fn float_param(
    params: &Params,
    name: &str,
    min: f32,
    max: f32,
) -> Result<Option<f32>, ApiError> {
    let Some(v) = params.get_non_empty(name) else {
        return Ok(None);
    };
    match v.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(Some(x)),
        _ => Err(ApiError::InvalidParameter(format!(
            "{name} \"{v}\" is invalid: use a number from {min} to {max}"
        ))),
    }
}

/// An optional boolean parameter: `true` or `false` (any case).
fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get_non_empty(name).map(str::trim) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::InvalidParameter(format!(
            "{name} \"{v}\" is invalid: use true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(q, None).unwrap()
    }

    #[test]
    fn db_name_rule() {
        assert!(db_name(&params("Name=ok_db1"), "Name").is_ok());
        for bad in ["Name=A", "Name=Upper", "Name=has-dash", "Name="] {
            let e = db_name(&params(bad), "Name").unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{bad}");
            assert!(e.message().contains("Name"), "{}", e.message());
        }
        let long = format!("Name={}", "a".repeat(65));
        assert!(db_name(&params(&long), "Name").is_err());
    }

    #[test]
    fn entity_and_extra_data_rules() {
        assert!(entity_id(&params("EntityId=sku_1")).is_ok());
        assert!(entity_id(&params("EntityId=Sku")).is_err());
        assert!(entity_id(&params(&format!("EntityId={}", "a".repeat(65)))).is_err());
        assert!(extra_data(&params("")).is_ok());
        let cjk = "风".repeat(512);
        assert!(extra_data(
            &Params::parse("", Some(format!("ExtraData={cjk}").as_bytes())).unwrap()
        )
        .is_ok());
        let too_long = "风".repeat(513);
        assert!(extra_data(
            &Params::parse("", Some(format!("ExtraData={too_long}").as_bytes())).unwrap()
        )
        .is_err());
    }

    #[test]
    fn image_url_or_content_exactly_one() {
        assert!(matches!(
            image_source(&params("ImageUrl=http%3A%2F%2Fa%2Fb.jpg")).unwrap(),
            ImageSource::Url(u) if u == "http://a/b.jpg"
        ));
        // "aGVsbG8=" is base64 of "hello"; padding optional, line breaks ignored.
        for q in [
            "ImageContent=aGVsbG8%3D",
            "ImageContent=aGVsbG8",
            "ImageContent=aGVs%0AbG8%3D",
        ] {
            match image_source(&params(q)).unwrap() {
                ImageSource::Bytes(b) => assert_eq!(b, b"hello", "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        let both = image_source(&params(
            "ImageUrl=http%3A%2F%2Fa%2Fb.jpg&ImageContent=aGVsbG8",
        ))
        .unwrap_err();
        assert_eq!(both.code(), "InvalidParameter");
        assert!(both.message().contains("exactly one"), "{}", both.message());
        let none = image_source(&params("")).unwrap_err();
        assert!(none.message().contains("ImageUrl") && none.message().contains("ImageContent"));
        let bad = image_source(&params("ImageContent=not*base64!")).unwrap_err();
        assert_eq!(bad.code(), "InvalidParameter");
        assert!(bad.message().contains("ImageContent"), "{}", bad.message());
    }

    #[test]
    fn data_id_rule() {
        assert!(data_id(&params("DataId=1585903814940000")).is_ok());
        for q in ["", "DataId=abc", "DataId=-1"] {
            let e = data_id(&params(q)).unwrap_err();
            assert!(e.message().contains("DataId"), "{q}: {}", e.message());
        }
    }

    #[test]
    fn integers_and_order() {
        assert_eq!(
            int_param(&params("Limit=5"), "Limit", 1, 1000).unwrap(),
            Some(5)
        );
        assert!(int_param(&params("Limit=0"), "Limit", 1, 1000).is_err());
        assert!(int_param(&params("Limit=abc"), "Limit", 1, 1000).is_err());
        assert!(int_param(&params("Limit=1001"), "Limit", 1, 1000).is_err());
        assert_eq!(order(&params("Order=asc")).unwrap(), Order::Asc);
        assert_eq!(order(&params("")).unwrap(), Order::Desc);
        assert!(order(&params("Order=up")).is_err());
    }

    #[test]
    fn min_score_and_distinct_entity() {
        let min = |q: &str| float_param(&params(q), "MinScore", 0.0, 10.0);
        assert_eq!(min("").unwrap(), None);
        assert_eq!(min("MinScore=7.5").unwrap(), Some(7.5));
        assert_eq!(min("MinScore=0").unwrap(), Some(0.0));
        assert_eq!(min("MinScore=10").unwrap(), Some(10.0));
        for bad in [
            "MinScore=-1",
            "MinScore=10.5",
            "MinScore=abc",
            "MinScore=NaN",
        ] {
            let e = min(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{bad}");
            assert!(e.message().contains("MinScore"), "{}", e.message());
        }
        let distinct = |q: &str| bool_param(&params(q), "DistinctEntity");
        assert_eq!(distinct("").unwrap(), None);
        assert_eq!(distinct("DistinctEntity=true").unwrap(), Some(true));
        assert_eq!(distinct("DistinctEntity=False").unwrap(), Some(false));
        assert!(distinct("DistinctEntity=yes").is_err());
    }

    #[test]
    fn crop_or_region_not_both() {
        let region = Region::parse("0,40,0,40").unwrap();
        assert_eq!(part(&params("")).unwrap(), Part::Whole);
        assert_eq!(part(&params("Crop=true")).unwrap(), Part::Subject);
        assert_eq!(part(&params("Crop=TRUE")).unwrap(), Part::Subject);
        assert_eq!(part(&params("Crop=False")).unwrap(), Part::Whole);
        assert_eq!(
            part(&params("Region=0,40,0,40&Crop=false")).unwrap(),
            Part::Region(region)
        );
        for (q, words) in [
            ("Crop=maybe", "Crop \"maybe\" is invalid: use true or false"),
            ("Crop=1", "Crop \"1\" is invalid"),
            (
                "Region=0,40,0,40&Crop=true",
                "send either Region or Crop=true, not both",
            ),
        ] {
            let e = part(&params(q)).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{q}");
            assert!(e.message().contains(words), "{q}: {}", e.message());
        }
        let e = map_err(ServiceError::SubjectModelMissing);
        assert_eq!((e.code(), e.http_status()), ("ServiceUnavailable", 503));
        assert!(e.message().contains("subject model"), "{}", e.message());
        // A store that cannot be reached (PostgreSQL down) is 503 too, never a 500.
        let e = map_err(ServiceError::from(crate::store::StoreError::Unavailable(
            "connection refused".into(),
        )));
        assert_eq!((e.code(), e.http_status()), ("ServiceUnavailable", 503));
        assert!(
            e.message().contains("connection refused"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_part_used_is_echoed() {
        use crate::vision::subject::NoSubject;
        let r = Region::parse("10,90,20,80").unwrap();
        let echo = |part, subject| {
            let mut data = json!({});
            echo_part(&mut data, part, subject);
            data
        };
        assert_eq!(echo(Part::Whole, None), json!({}));
        assert_eq!(
            echo(Part::Region(r), None),
            json!({"Region": "10,90,20,80"})
        );
        assert_eq!(
            echo(Part::Subject, Some(Subject::Found(r))),
            json!({"Region": "10,90,20,80", "Crop": "subject"})
        );
        assert_eq!(
            echo(Part::Subject, Some(Subject::None(NoSubject::EmptyMask))),
            json!({"Crop": "whole image: no distinct subject found"})
        );
    }
}
