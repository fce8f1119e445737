//! `imgsearch dedup --db NAME [--min-score S]`: the groups of copies in one database, for a
//! person to review ("which of these uploads are the same picture?").
//!
//! Through the API only: every image is searched with its own stored descriptors
//! (SearchImage with `DataId`, `MinScore` = S, `--neighbours` results), `--jobs` at a time;
//! two images are linked when either finds the other at S or above, and a group is a
//! connected set of links (so an edited copy of an edited copy joins its original). Groups
//! are listed oldest image first (the one to keep, by default), each member with its score
//! to that first image when the first's search found it.
//!
//! Not here: deleting (use DeleteImage on what you decide to drop), the console's review
//! view.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::client::Client;
use super::import::list_all;
use super::profile::ConnectionArgs;
use crate::index::connected::connected_sets;
use crate::rules::{DUPLICATE_NEIGHBOURS_DEFAULT, DUPLICATE_NEIGHBOURS_MAX, SAME_PICTURE_SCORE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DedupFormat {
    /// One JSON object per group per line: {"group", "images": [{"DataId", "EntityId",
    /// "ExtraData", "ScoreToFirst"}]}.
    Json,
    /// group,data_id,entity_id,extra_data,score_to_first with a header row.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct DedupArgs {
    #[arg(long)]
    pub db: String,
    /// Link two images when one finds the other with at least this Score (0-10; 8 = "the
    /// same picture", README "Copy detection").
    #[arg(long, default_value_t = SAME_PICTURE_SCORE, value_parser = parse_score)]
    pub min_score: f32,
    /// Results asked per image: more finds larger groups of copies in one step.
    #[arg(long, default_value_t = DUPLICATE_NEIGHBOURS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(2..=DUPLICATE_NEIGHBOURS_MAX as i64))]
    pub neighbours: u32,
    /// Searches in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    #[arg(long, value_enum, default_value_t = DedupFormat::Json)]
    pub format: DedupFormat,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// A Score bound, 0-10 (a usage error otherwise, exit code 2).
fn parse_score(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a Score from 0 to 10")),
    }
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub data_id: String,
    pub entity_id: String,
    pub extra_data: String,
    /// Score to the group's first image; `None` for the first itself and for members linked
    /// only through another member.
    pub score_to_first: Option<f64>,
}

pub fn run(args: DedupArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let (images, edges) = rt.block_on(search_all(client, &args))?;
    let groups = group(&images, &edges);
    let in_groups: usize = groups.iter().map(Vec::len).sum();
    print!("{}", render(&groups, args.format));
    eprintln!(
        "dedup: {} images, {} groups of copies ({in_groups} images in them), {} searches in {:.1} s",
        images.len(),
        groups.len(),
        images.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The database's records and, per searched image, the (other DataId, Score) it found.
async fn search_all(
    client: Client,
    args: &DedupArgs,
) -> anyhow::Result<(Vec<Value>, HashMap<String, Vec<(String, f64)>>)> {
    let images = list_all(&client, &args.db).await?;
    let gate = Arc::new(Semaphore::new(args.jobs as usize));
    let mut set = tokio::task::JoinSet::new();
    for img in &images {
        let id = str_of(img, "DataId").to_string();
        let (client, gate, db) = (client.clone(), gate.clone(), args.db.clone());
        let (limit, min) = (args.neighbours.to_string(), args.min_score.to_string());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let params = [
                ("DbName", db.as_str()),
                ("DataId", id.as_str()),
                ("Limit", limit.as_str()),
                ("MinScore", min.as_str()),
            ];
            let body = client.call_with_retry("SearchImage", &params, 8).await;
            (id, body)
        });
    }
    let mut edges = HashMap::new();
    while let Some(joined) = set.join_next().await {
        let (id, body) = joined.context("a search task failed")?;
        let body = match body {
            Ok(b) => b,
            // Deleted since the listing: nothing to link.
            Err(e) if e.code() == Some("InvalidParameter") => continue,
            Err(e) => return Err(e.into()),
        };
        let found: Vec<(String, f64)> = body
            .pointer("/Data/MatchList")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|m| {
                (
                    str_of(m, "DataId").to_string(),
                    m["Score"].as_f64().unwrap_or(0.0),
                )
            })
            .filter(|(other, _)| *other != id)
            .collect();
        edges.insert(id, found);
    }
    Ok((images, edges))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Connected sets of linked images, 2 or more each; oldest DataId first in each, groups in
/// the order of their first image. DataIds are fixed-width decimal, so string order is age.
pub fn group(images: &[Value], edges: &HashMap<String, Vec<(String, f64)>>) -> Vec<Vec<Member>> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by_key(|&i| str_of(&images[i], "DataId"));
    let ids: Vec<&str> = order
        .iter()
        .map(|&i| str_of(&images[i], "DataId"))
        .collect();
    let position: HashMap<&str, usize> = ids.iter().enumerate().map(|(p, id)| (*id, p)).collect();
    let position = &position;
    let links = edges.iter().flat_map(|(from, found)| {
        let a = position.get(from.as_str()).copied();
        found
            .iter()
            .filter_map(move |(to, _)| Some((a?, *position.get(to.as_str())?)))
    });
    connected_sets(ids.len(), links.collect::<Vec<_>>())
        .into_iter()
        .map(|members| {
            let first_found = edges.get(ids[members[0]]);
            members
                .iter()
                .map(|&p| {
                    let image = &images[order[p]];
                    Member {
                        data_id: ids[p].to_string(),
                        entity_id: str_of(image, "EntityId").to_string(),
                        extra_data: str_of(image, "ExtraData").to_string(),
                        score_to_first: first_found
                            .and_then(|f| f.iter().find(|(id, _)| id == ids[p]).map(|(_, s)| *s)),
                    }
                })
                .collect()
        })
        .collect()
}

pub fn render(groups: &[Vec<Member>], format: DedupFormat) -> String {
    let mut out = String::new();
    match format {
        DedupFormat::Json => {
            for (g, members) in groups.iter().enumerate() {
                let images: Vec<Value> = members
                    .iter()
                    .map(|m| {
                        json!({
                            "DataId": m.data_id,
                            "EntityId": m.entity_id,
                            "ExtraData": m.extra_data,
                            "ScoreToFirst": m.score_to_first,
                        })
                    })
                    .collect();
                out.push_str(&json!({ "group": g + 1, "images": images }).to_string());
                out.push('\n');
            }
        }
        DedupFormat::Csv => {
            out.push_str("group,data_id,entity_id,extra_data,score_to_first\n");
            for (g, members) in groups.iter().enumerate() {
                for m in members {
                    let score = m.score_to_first.map(|s| s.to_string()).unwrap_or_default();
                    out.push_str(&format!(
                        "{},{},{},{},{score}\n",
                        g + 1,
                        m.data_id,
                        csv_field(&m.entity_id),
                        csv_field(&m.extra_data)
                    ));
                }
            }
        }
    }
    out
}

/// Quoted when it holds a comma, quote or line break (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, entity: &str) -> Value {
        json!({"DataId": id, "EntityId": entity, "ExtraData": format!("x,{entity}")})
    }

    #[test]
    fn links_join_into_groups_oldest_first_and_singles_are_left_out() {
        let images = vec![
            img("01", "a"),
            img("02", "b"),
            img("03", "c"),
            img("04", "d"),
            img("05", "e"),
        ];
        let mut edges = HashMap::new();
        // 04 finds 01; 02 finds 04 (a copy of a copy); 03 finds nothing; 05 finds 03.
        edges.insert("04".to_string(), vec![("01".to_string(), 9.0)]);
        edges.insert("02".to_string(), vec![("04".to_string(), 8.5)]);
        edges.insert("01".to_string(), vec![("04".to_string(), 9.0)]);
        edges.insert("05".to_string(), vec![("03".to_string(), 8.1)]);
        let groups = group(&images, &edges);
        let ids: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|m| m.data_id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["01", "02", "04"], vec!["03", "05"]]);
        assert_eq!(groups[0][2].score_to_first, Some(9.0));
        assert_eq!(groups[0][1].score_to_first, None, "linked through 04 only");
        let csv = render(&groups, DedupFormat::Csv);
        assert!(
            csv.starts_with("group,data_id,entity_id,extra_data,score_to_first\n1,01,a,\"x,a\",\n")
        );
        let first: Value =
            serde_json::from_str(render(&groups, DedupFormat::Json).lines().next().unwrap())
                .unwrap();
        assert_eq!(first["images"][2]["ScoreToFirst"], 9.0);
    }
}
