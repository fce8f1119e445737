//! The behaviour every [`ImageStore`] backend must have, as one test suite run against each
//! (SQLite in a temporary directory, PostgreSQL in a fresh schema of the server named by
//! `IMGSEARCH_TEST_PG_URL`), so that both are held to the same semantics through the trait
//! alone: databases and tenants, DataIds, paging, prefixes, quotas, embeddings, thumbnails,
//! attributes and filters, uploads, duplicate review's deletes and marks, concurrency,
//! reopening.
//!
//! Not here: what only one backend has (SQLite's pragmas, file corruption and crash tests in
//! `sqlite/tests.rs`; PostgreSQL's migrations under a lock and connection failures in
//! `postgres/tests.rs`).
//!
//! Without `IMGSEARCH_TEST_PG_URL` the PostgreSQL half fails when `CI` is set and otherwise
//! prints that it did nothing (`scripts/test.sh` always starts a server and sets it).

mod attributes;
pub(crate) mod backends;
mod cases;
mod duplicates;
mod paging;
mod vectors;

use std::sync::Arc;

use super::{ImageStore, StoreOptions};

/// A place a store lives: every `open` opens the same store (to test reopening).
pub(crate) trait Backend {
    fn open(&self, options: StoreOptions) -> Arc<dyn ImageStore>;
}

/// Runs `case` against the backend `make` gives, or does nothing when it gives none (it
/// said why).
pub(crate) fn run(make: fn() -> Option<Box<dyn Backend>>, case: fn(&dyn Backend)) {
    if let Some(backend) = make() {
        case(backend.as_ref());
    }
}

/// One `#[test]` per case for the backend `$make` (a `fn() -> Option<Box<dyn Backend>>`).
macro_rules! conformance_suite {
    ($make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store::conformance::run($make, $crate::store::conformance::cases::$case);
            }
        )*
    };
}

/// Every case, for one backend.
macro_rules! all_cases {
    ($make:path) => {
        conformance_suite!($make;
            db_lifecycle_and_tenant_isolation,
            duplicate_db_is_db_exists_and_bad_names_are_invalid,
            delete_db_removes_images_vectors_and_thumbnails,
            add_list_and_delete_entity,
            dimension_mismatch_and_bad_embeddings_are_refused,
            max_images_per_db_is_enforced,
            tenant_quotas_on_databases_and_images_are_enforced,
            concurrent_creates_respect_the_database_quota,
            data_ids_strictly_increase_and_survive_reopen,
            entity_prefix_is_literal_for_underscore_and_percent,
            order_offset_limit_and_total_count,
            keyset_paging_survives_concurrent_inserts_and_deletes,
            get_images_keeps_the_given_order_and_skips_missing,
            thumbnail_round_trip_and_isolation,
            load_all_embeddings_round_trip,
            concurrent_adds_are_all_stored_once,
            copy_descriptors_are_stored_beside_the_embedding_and_deleted_with_it,
            first_image_of_entity_and_backfill_of_copy_descriptors,
            attributes_round_trip_and_filters_agree_with_memory,
            updates_set_only_what_is_given_and_the_table_reads_them,
            uploads_are_read_by_their_owner_until_they_expire,
            the_upload_byte_quota_counts_unexpired_uploads_of_the_owner_only,
            deleting_chosen_images_and_not_duplicate_marks,
        );
    };
}

mod sqlite {
    all_cases!(super::backends::sqlite);
}

mod postgres {
    all_cases!(super::backends::postgres);
}
