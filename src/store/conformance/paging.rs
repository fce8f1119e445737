//! Paging cases of the suite: EntityIdPrefix taken literally, Order/Offset/Limit with the
//! total count, the keyset cursor under concurrent writes, records by id in the given order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::cases::{add_many, emb, img, list_all, open, query, DIM};
use super::Backend;
use crate::store::{DataId, DbRef, ImagePage, ListQuery, Order};

pub(super) fn entity_prefix_is_literal_for_underscore_and_percent(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities = [
        "a_b",
        "axb",
        "a_",
        "a",
        "a%c",
        "abc",
        "a%",
        "ab",
        "b_1",
        "a_b_c",
        "A_b",
        "a\u{10FFFF}x",
        "a\u{10FFFF}",
        "b",
        "é_1",
        "éx",
        "a\\b",
    ];
    let owned: Vec<String> = entities.iter().map(|s| s.to_string()).collect();
    add_many(&*store, db, &owned);
    let matching = |prefix: &str| -> Vec<String> {
        let mut got: Vec<String> = list_all(&*store, db, Order::Asc, Some(prefix))
            .into_iter()
            .map(|r| r.entity_id)
            .collect();
        got.sort();
        assert_eq!(
            store
                .list_images(db, &query(Order::Desc, Some(prefix), 1))
                .unwrap()
                .total_count,
            got.len() as u64,
            "{prefix:?}"
        );
        got
    };
    let expected = |prefix: &str| -> Vec<String> {
        let mut e: Vec<String> = owned
            .iter()
            .filter(|s| s.starts_with(prefix))
            .cloned()
            .collect();
        e.sort();
        e
    };
    for prefix in [
        "a_",
        "a%",
        "a",
        "ab",
        "_",
        "%",
        "a\u{10FFFF}",
        "é_",
        "é",
        "b",
        "zz",
        "a_b",
        "a\\",
    ] {
        assert_eq!(matching(prefix), expected(prefix), "prefix {prefix:?}");
    }
    assert_eq!(matching("a_"), ["a_", "a_b", "a_b_c"]);
    assert_eq!(matching("a%"), ["a%", "a%c"]);
    assert_eq!(
        list_all(&*store, db, Order::Asc, Some("")).len(),
        entities.len()
    );
}

pub(super) fn order_offset_limit_and_total_count(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..50u32)
        .map(|i| format!("{}_{i}", if i.is_multiple_of(5) { "five" } else { "other" }))
        .collect();
    let ids = add_many(&*store, db, &entities);
    let page = |order, prefix, after, offset, limit| {
        store
            .list_images(
                db,
                &ListQuery {
                    order,
                    entity_id_prefix: prefix,
                    after,
                    filter: None,
                    offset,
                    limit,
                },
            )
            .unwrap()
    };
    let idsof = |p: &ImagePage| p.images.iter().map(|r| r.data_id).collect::<Vec<_>>();
    let p = page(Order::Asc, None, None, 0, 10);
    assert_eq!(idsof(&p), ids[..10]);
    assert_eq!((p.total_count, p.has_more), (50, true));
    let rev: Vec<DataId> = ids.iter().rev().copied().collect();
    assert_eq!(idsof(&page(Order::Desc, None, None, 0, 10)), rev[..10]);
    let p = page(Order::Asc, None, None, 45, 10);
    assert_eq!(idsof(&p), ids[45..]);
    assert_eq!((p.total_count, p.has_more), (50, false));
    assert!(!page(Order::Asc, None, None, 40, 10).has_more);
    let p = page(Order::Desc, None, None, 60, 10);
    assert!(p.images.is_empty() && p.total_count == 50 && !p.has_more);
    assert_eq!(
        idsof(&page(Order::Asc, None, Some(ids[9]), 2, 3)),
        ids[12..15]
    );
    let p = page(Order::Desc, None, Some(ids[9]), 0, 100);
    assert_eq!(idsof(&p), rev[41..]);
    assert_eq!(p.total_count, 50, "total ignores the cursor");
    let five: Vec<DataId> = ids.iter().step_by(5).copied().collect();
    let p = page(Order::Asc, Some("five_"), None, 0, 4);
    assert_eq!(idsof(&p), five[..4]);
    assert_eq!((p.total_count, p.has_more), (10, true));
    let p = page(Order::Desc, Some("five_"), Some(five[5]), 1, 100);
    assert_eq!(idsof(&p), [five[3], five[2], five[1], five[0]]);
    let p = page(Order::Asc, None, None, 0, 0);
    assert!(p.images.is_empty() && p.total_count == 50 && p.has_more);
}

/// Pages through 2,400 images with the keyset cursor while another thread adds images and
/// deletes entities: every image that existed throughout is returned exactly once, in order.
pub(super) fn keyset_paging_survives_concurrent_inserts_and_deletes(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..2_400).map(|i| format!("e{:03}", i % 300)).collect();
    let initial: Vec<DataId> = add_many(&*store, db, &entities);
    let deleted = Arc::new(Mutex::new(HashSet::new()));
    for (order, prefix) in [
        (Order::Asc, None),
        (Order::Desc, None),
        (Order::Asc, Some("e1")),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (store, stop, deleted) = (store.clone(), stop.clone(), deleted.clone());
            std::thread::spawn(move || {
                let v = emb(9, DIM);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .add_image(db, &img(&format!("e{:03}", n % 300), &v))
                        .unwrap();
                    if n.is_multiple_of(3) {
                        let gone = store
                            .delete_entity(db, &format!("e{:03}", (n * 7) % 300))
                            .unwrap();
                        deleted.lock().unwrap().extend(gone);
                    }
                    n += 1;
                }
                n
            })
        };
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let q = ListQuery {
                after,
                ..query(order, prefix, 100)
            };
            let page = store.list_images(db, &q).unwrap();
            seen.extend(page.images.iter().map(|r| r.data_id));
            pages += 1;
            let v = emb(8, DIM);
            store.add_image(db, &img("e150", &v)).unwrap();
            let gone = store
                .delete_entity(db, &format!("e{:03}", (pages * 13) % 300))
                .unwrap();
            deleted.lock().unwrap().extend(gone);
            match (page.has_more, page.images.last()) {
                (true, Some(last)) => after = Some(last.data_id),
                _ => break,
            }
            assert!(pages < 1_000, "paging does not terminate");
        }
        stop.store(true, Ordering::Relaxed);
        let churned = churn.join().unwrap();
        let unique: HashSet<DataId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{order:?}: a record came twice");
        assert!(
            seen.windows(2).all(|w| match order {
                Order::Asc => w[0] < w[1],
                Order::Desc => w[0] > w[1],
            }),
            "{order:?}: pages are not in order"
        );
        let deleted_now = deleted.lock().unwrap();
        let in_scope = |i: usize| prefix.is_none_or(|p| entities[i].starts_with(p));
        let survivors: Vec<DataId> = initial
            .iter()
            .enumerate()
            .filter(|&(i, id)| in_scope(i) && !deleted_now.contains(id))
            .map(|(_, id)| *id)
            .collect();
        assert!(
            survivors.len() > 100,
            "the test must leave survivors to check"
        );
        let missing = survivors.iter().filter(|id| !unique.contains(id)).count();
        assert_eq!(missing, 0, "{order:?}/{prefix:?}: skipped survivors");
        assert!(pages > 2, "{pages} pages, {churned} concurrent adds");
    }
    assert_eq!(
        store.get_db(db).unwrap().unwrap().image_count,
        list_all(&*store, db, Order::Asc, None).len() as u64,
        "the maintained count matches the rows"
    );
}

pub(super) fn get_images_keeps_the_given_order_and_skips_missing(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    let other = DbRef::new("u", "default");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let ids = add_many(&*store, db, &["a".into(), "b".into(), "c".into()]);
    let foreign = add_many(&*store, other, &["z".into()]);
    let missing = DataId::from_u64(1).unwrap();
    let got = store
        .get_images(db, &[ids[2], missing, ids[0], foreign[0]])
        .unwrap();
    let got: Vec<(DataId, &str)> = got
        .iter()
        .map(|r| (r.data_id, r.entity_id.as_str()))
        .collect();
    assert_eq!(got, [(ids[2], "c"), (ids[0], "a")]);
    assert!(store.get_images(db, &[]).unwrap().is_empty());
}
