//! Attribute cases of the suite: stored with an add, listed, updated in place, read back for
//! the attribute table, and `Filter`s evaluated by the backend exactly as `Filter::matches`
//! evaluates them in memory (the same images for every filter tried).

use super::cases::emb;
use super::Backend;
use crate::attributes::{Attributes, Filter};
use crate::store::{
    DbRef, ImageRecord, ImageSelector, ImageStore, ImageUpdate, ListQuery, NewImage, Order,
    StoreOptions,
};

fn attrs(i: i64, colour: Option<&str>) -> Attributes {
    let mut a = Attributes::NONE;
    a.ints[0] = Some(i);
    a.ints[2] = (i % 3 == 0).then_some(-i);
    a.strs[0] = colour.map(str::to_string);
    a.strs[3] = Some(format!("sku \"{i}\" 风"));
    a
}

const SHOP: DbRef<'static> = DbRef {
    tenant: "t",
    name: "shop",
};

fn store_with_attributes(b: &dyn Backend) -> (std::sync::Arc<dyn ImageStore>, Vec<ImageRecord>) {
    let store = b.open(StoreOptions::default());
    store.create_db(SHOP).unwrap();
    let colours = [Some("red"), Some("blue"), None, Some("green")];
    let all: Vec<Attributes> = (0..40)
        .map(|i| attrs(i, colours[i as usize % 4]))
        .chain([Attributes::NONE])
        .collect();
    let v = emb(1, 8);
    let images: Vec<NewImage<'_>> = all
        .iter()
        .map(|a| NewImage {
            entity_id: "e",
            extra_data: "",
            image_url: "",
            embedding: &v,
            copy_embedding: None,
            thumbnail: None,
            attributes: a,
        })
        .collect();
    let records = store.add_images(SHOP, &images).unwrap();
    assert_eq!(records[7].attributes, all[7]);
    (store, records)
}

fn list(store: &dyn ImageStore, filter: Option<&Filter>, limit: u32) -> (Vec<ImageRecord>, u64) {
    let page = store
        .list_images(
            SHOP,
            &ListQuery {
                order: Order::Asc,
                entity_id_prefix: None,
                after: None,
                filter,
                offset: 0,
                limit,
            },
        )
        .unwrap();
    (page.images, page.total_count)
}

pub(crate) fn attributes_round_trip_and_filters_agree_with_memory(b: &dyn Backend) {
    let (store, records) = store_with_attributes(b);
    let (listed, total) = list(&*store, None, 100);
    assert_eq!(total, 41);
    assert_eq!(listed, records);
    for text in [
        "int_attr >= 10 AND int_attr < 20",
        "str_attr = 'red' OR str_attr = \"green\"",
        "str_attr != 'red'",
        "str_attr not in ('red', 'blue')",
        "str_attr in ('red', 'nothing')",
        "int_attr3 < -5",
        "int_attr3 != -3",
        "int_attr3 <= -3 AND int_attr > 5",
        "int_attr in (1, 2, 3) OR (str_attr = 'blue' AND int_attr > 30)",
        "int_attr not in (0, 39)",
        "str_attr4 = 'sku \"7\" 风'",
        "int_attr2 = 0",
        "int_attr2 != 0",
    ] {
        let f = Filter::parse(text).unwrap();
        let expected: Vec<&ImageRecord> = records
            .iter()
            .filter(|r| f.matches(&r.attributes))
            .collect();
        let (got, total) = list(&*store, Some(&f), 100);
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{text}");
        assert_eq!(
            total,
            expected.len() as u64,
            "{text}: TotalCount counts the filter"
        );
        let (page, _) = list(&*store, Some(&f), 2);
        assert_eq!(page.len(), expected.len().min(2));
    }
}

pub(crate) fn updates_set_only_what_is_given_and_the_table_reads_them(b: &dyn Backend) {
    let (store, records) = store_with_attributes(b);
    let mut change = Attributes::NONE;
    change.ints[1] = Some(99);
    change.strs[0] = Some("black".into());
    let updated = store
        .update_images(
            SHOP,
            ImageSelector::DataId(records[1].data_id),
            &ImageUpdate {
                extra_data: None,
                attributes: &change,
            },
        )
        .unwrap();
    assert_eq!(updated.len(), 1);
    let mut want = records[1].attributes.clone();
    want.merge(&change);
    assert_eq!(updated[0].attributes, want);
    assert_eq!(
        updated[0].extra_data, records[1].extra_data,
        "ExtraData not given: kept"
    );
    assert!(updated[0].updated_at >= records[1].updated_at);
    let all = store
        .update_images(
            SHOP,
            ImageSelector::Entity("e"),
            &ImageUpdate {
                extra_data: Some("x"),
                attributes: &Attributes::NONE,
            },
        )
        .unwrap();
    assert_eq!(all.len(), 41);
    assert!(all.iter().all(|r| r.extra_data == "x"));
    assert!(all.windows(2).all(|w| w[0].data_id < w[1].data_id));
    let mut seen = Vec::new();
    let n = store
        .for_each_attributes(SHOP, &mut |id, a| seen.push((id, a)))
        .unwrap();
    assert_eq!(n, 40, "the image without attributes is not visited");
    assert_eq!(seen[1], (records[1].data_id, want));
    let none = store
        .update_images(
            SHOP,
            ImageSelector::Entity("nobody"),
            &ImageUpdate {
                extra_data: Some("x"),
                attributes: &Attributes::NONE,
            },
        )
        .unwrap();
    assert!(none.is_empty());
}
