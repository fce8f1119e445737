//! The suite's case for duplicate review: deleting chosen images by DataId and the "not a
//! copy" marks (both images of the database, either order, idempotent, gone with either
//! image, kept across a reopen).

use super::cases::{emb, img, open, DIM};
use super::Backend;
use crate::store::DbRef;

pub(crate) fn deleting_chosen_images_and_not_duplicate_marks(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "shop");
    let other = DbRef::new("t", "other");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let v = emb(1, DIM);
    let a = store.add_image(db, &img("a", &v)).unwrap().data_id;
    let b_id = store.add_image(db, &img("b", &v)).unwrap().data_id;
    let c = store.add_image(db, &img("c", &v)).unwrap().data_id;
    let d = store.add_image(db, &img("d", &v)).unwrap().data_id;
    let x = store.add_image(other, &img("x", &v)).unwrap().data_id;

    assert!(store.mark_not_duplicate(db, b_id, a, 1).unwrap());
    assert!(
        store.mark_not_duplicate(db, a, b_id, 2).unwrap(),
        "twice is fine"
    );
    assert!(
        !store.mark_not_duplicate(db, a, x, 3).unwrap(),
        "x is another db's"
    );
    assert!(!store.mark_not_duplicate(db, a, a, 3).unwrap());
    assert!(store.mark_not_duplicate(db, c, b_id, 4).unwrap());
    assert!(store.mark_not_duplicate(db, d, c, 5).unwrap());
    assert_eq!(
        store.not_duplicate_pairs(db).unwrap(),
        vec![(a, b_id), (b_id, c), (c, d)]
    );
    assert!(store.not_duplicate_pairs(other).unwrap().is_empty());
    drop(store);
    let store = open(b);
    assert_eq!(
        store.not_duplicate_pairs(db).unwrap().len(),
        3,
        "marks survive a reopen"
    );

    // Deleting chosen images: only this database's, their marks go with them.
    assert_eq!(store.delete_images(db, &[b_id, x]).unwrap(), vec![b_id]);
    assert_eq!(store.not_duplicate_pairs(db).unwrap(), vec![(c, d)]);
    assert_eq!(
        store.delete_images(db, &[b_id]).unwrap(),
        vec![],
        "a retry deletes nothing"
    );
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 3);
    assert_eq!(store.get_db(other).unwrap().unwrap().image_count, 1);
    assert_eq!(store.get_images(db, &[a, b_id, c]).unwrap().len(), 2);
    // Emptied by DataId: the dimension is forgotten, as with DeleteImage by entity.
    let mut left = store.delete_images(db, &[d, c, a]).unwrap();
    left.sort_unstable();
    assert_eq!(left, vec![a, c, d]);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 0);
    assert!(store.not_duplicate_pairs(db).unwrap().is_empty());
    store.add_image(db, &img("e", &emb(2, DIM + 1))).unwrap();
    assert!(store.delete_images(DbRef::new("t", "nope"), &[a]).is_err());
}
