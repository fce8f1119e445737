//! Our duplicate-review actions, for the console's Duplicates view: `ListDuplicates` (the
//! groups of copies in a database, searched on the server a few seconds per call so a
//! client polls until `Complete`), `MarkNotDuplicate` (keep two images out of each other's
//! group) and `DeleteImage` by `DataId` ("keep this one, delete the rest"). Invisible to
//! clients that do not call them.
//!
//! Not here: the grouping itself (`service::images::duplicates`), the CLI's `imgsearch
//! dedup` (`remote::dedup`).

use std::time::Duration;

use serde_json::{json, Value};

use super::actions::{data_id, db_name, float_param, image_json, int_param, map_err, required};
use super::error::ApiError;
use super::params::Params;
use crate::rules::{
    DELETE_DATA_IDS_MAX, DUPLICATE_GROUPS_DEFAULT_LIMIT, DUPLICATE_GROUPS_MAX_LIMIT,
    DUPLICATE_NEIGHBOURS_DEFAULT, DUPLICATE_NEIGHBOURS_MAX, DUPLICATE_REVIEW_BUDGET_MS,
    SAME_PICTURE_SCORE, SCORE_MAX,
};
use crate::service::images::{ImageService, ReviewRequest};
use crate::store::DataId;

/// `ListDuplicates` (DbName; MinScore, Neighbours, Start, Limit optional).
pub(super) async fn list_duplicates(
    service: &ImageService,
    tenant: &str,
    params: &Params,
) -> Result<Option<Value>, ApiError> {
    let db = db_name(params, "DbName")?;
    let min_score = float_param(params, "MinScore", 0.0, SCORE_MAX)?.unwrap_or(SAME_PICTURE_SCORE);
    let neighbours = int_param(params, "Neighbours", 2, DUPLICATE_NEIGHBOURS_MAX.into())?
        .unwrap_or(DUPLICATE_NEIGHBOURS_DEFAULT.into());
    let start = int_param(params, "Start", 0, u32::MAX.into())?.unwrap_or(0);
    let limit = int_param(params, "Limit", 1, DUPLICATE_GROUPS_MAX_LIMIT.into())?
        .unwrap_or(DUPLICATE_GROUPS_DEFAULT_LIMIT.into());
    let req = ReviewRequest {
        min_score,
        neighbours: neighbours as usize,
        budget: Duration::from_millis(DUPLICATE_REVIEW_BUDGET_MS),
        start: start as usize,
        limit: limit as usize,
    };
    let review = service
        .review_duplicates(tenant, &db, req)
        .await
        .map_err(map_err)?;
    let groups: Vec<Value> = review
        .groups
        .iter()
        .map(|members| {
            let images: Vec<Value> = members
                .iter()
                .map(|m| {
                    let mut v = image_json(&m.record);
                    if let Some(s) = m.score_to_first {
                        v["ScoreToFirst"] = json!(s);
                    }
                    v
                })
                .collect();
            json!({ "Images": images })
        })
        .collect();
    Ok(Some(json!({
        "Groups": groups,
        "TotalGroups": review.total_groups,
        "Searched": review.searched,
        "TotalImages": review.total_images,
        "Complete": review.searched >= review.total_images,
    })))
}

/// `MarkNotDuplicate` (DbName, DataId, OtherDataId).
pub(super) async fn mark_not_duplicate(
    service: &ImageService,
    tenant: &str,
    params: &Params,
) -> Result<Option<Value>, ApiError> {
    let db = db_name(params, "DbName")?;
    let a = data_id(params)?;
    let b = parse_data_id(
        "OtherDataId",
        params.get_non_empty("OtherDataId").ok_or_else(|| {
            required(
                "OtherDataId",
                "the DataId of the image that is not a copy of DataId",
            )
        })?,
    )?;
    service
        .mark_not_duplicate(tenant, &db, a, b)
        .await
        .map_err(map_err)?;
    Ok(None)
}

/// `DeleteImage` with `DataId` (ours: one id or up to [`DELETE_DATA_IDS_MAX`] separated by
/// commas) instead of `EntityId`; answers how many were deleted (ids not in the database
/// count nothing, so a retried call succeeds).
pub(super) async fn delete_by_data_id(
    service: &ImageService,
    tenant: &str,
    params: &Params,
) -> Result<Option<Value>, ApiError> {
    let db = db_name(params, "DbName")?;
    if params.get_non_empty("EntityId").is_some() {
        return Err(ApiError::InvalidParameter(
            "send either EntityId (every image of that entity) or DataId (those images), not both"
                .into(),
        ));
    }
    let raw = params.get_non_empty("DataId").unwrap_or_default();
    let ids = raw
        .split(',')
        .map(|v| parse_data_id("DataId", v.trim()))
        .collect::<Result<Vec<DataId>, _>>()?;
    if ids.len() > DELETE_DATA_IDS_MAX {
        return Err(ApiError::InvalidParameter(format!(
            "DataId names {} images: send at most {DELETE_DATA_IDS_MAX} per call, separated by commas",
            ids.len()
        )));
    }
    let deleted = service
        .delete_images(tenant, &db, ids)
        .await
        .map_err(map_err)?;
    Ok(Some(json!({ "Deleted": deleted })))
}

fn parse_data_id(name: &str, v: &str) -> Result<DataId, ApiError> {
    v.parse::<DataId>().map_err(|_| {
        ApiError::InvalidParameter(format!(
            "{name} \"{v}\" is invalid: use a DataId exactly as AddImage or ListImages returned it"
        ))
    })
}
