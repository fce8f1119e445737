//! Tests of what only the PostgreSQL store has: the URL and its `schema` parameter,
//! migrations (versioned, under a lock when several nodes open at once, a newer schema or a
//! foreign one refused untouched), connection failures as `Unavailable` and recovery after
//! the server dropped the connections, bytewise text order whatever the locale, and one store
//! seen by two "nodes". The behaviour shared with SQLite is in `store::conformance`.

use super::schema::MIGRATIONS;
use super::*;
use crate::store::conformance::backends::PgSchema;
use crate::store::{DbRef, ImageStore, NewImage};

fn image<'a>(entity: &'a str, v: &'a [f32]) -> NewImage<'a> {
    NewImage {
        entity_id: entity,
        extra_data: "",
        image_url: "",
        embedding: v,
        copy_embedding: None,
        thumbnail: None,
        attributes: &crate::store::Attributes::NONE,
    }
}

#[test]
fn urls_and_schema_names() {
    let (config, schema) = parse_url("postgres://u@%2Ftmp%2Fx:5433/db?schema=abc_1").unwrap();
    assert_eq!(schema, "abc_1");
    assert_eq!(config.get_dbname(), Some("db"));
    assert_eq!(config.get_ports(), [5433]);
    assert_eq!(config.get_options(), Some("-c search_path=abc_1"));
    assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
    let (config, schema) =
        parse_url("postgresql://u:pw@h/db?connect_timeout=7&schema=s&application_name=x").unwrap();
    assert_eq!(schema, "s");
    assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(7)));
    assert_eq!(config.get_application_name(), Some("x"));
    let (_, schema) = parse_url("postgres://u@h/db").unwrap();
    assert_eq!(schema, DEFAULT_SCHEMA);
    for bad in [
        "postgres://u@h/db?schema=Bad",
        "postgres://u@h/db?schema=1a",
        "postgres://u@h/db?schema=a;drop",
        "postgres://u@h/db?schema=",
        "mysql://u@h/db",
        "/var/lib/imgsearch",
        "postgres://u@h/db?nonsense=1",
    ] {
        assert!(
            matches!(parse_url(bad), Err(StoreError::Invalid(_))),
            "{bad}"
        );
    }
}

#[test]
fn an_unreachable_server_is_unavailable_quickly() {
    // Nothing listens on port 1 (a TCP refusal) nor at a socket path that does not exist.
    for url in [
        "postgres://u@127.0.0.1:1/db",
        "postgres://u@%2Fnonexistent%2Fdir/db",
    ] {
        let started = std::time::Instant::now();
        let err = PgStore::open(url, StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{url}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn migrations_are_versioned_and_run_once_when_nodes_start_together() {
    let Some(pg) = PgSchema::new() else { return };
    // Eight "nodes" open the same fresh schema at once: the advisory lock lets one migrate.
    let stores: Vec<PgStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| PgStore::open(&pg.url, StoreOptions::default())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let mut admin = pg.admin();
    let versions: Vec<i64> = admin
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i64> = (1..=MIGRATIONS.len() as i64).collect();
    assert_eq!(versions, want);
    // Every node sees the same store.
    stores[0].create_db(DbRef::new("t", "shared")).unwrap();
    assert!(stores[7]
        .get_db(DbRef::new("t", "shared"))
        .unwrap()
        .is_some());
}

#[test]
fn a_newer_or_foreign_schema_is_refused_untouched() {
    let Some(pg) = PgSchema::new() else { return };
    drop(PgStore::open(&pg.url, StoreOptions::default()).unwrap());
    let mut admin = pg.admin();
    admin
        .batch_execute("INSERT INTO schema_version(version) VALUES (99)")
        .unwrap();
    let err = PgStore::open(&pg.url, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, supported } if supported == MIGRATIONS.len() as i64),
        "{err:?}"
    );
    let max: i64 = admin
        .query_one("SELECT max(version) FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(max, 99, "left as it was");

    // A schema that holds someone else's tables is not migrated.
    let Some(other) = PgSchema::new() else { return };
    let mut admin = other.admin();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.images (x int)",
            other.schema
        ))
        .unwrap();
    let err = PgStore::open(&other.url, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&other.schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was added");
}

/// The server drops every connection of the store (as a restart does): the calls in flight
/// get `Unavailable` at worst, never a panic, and the store reconnects by itself.
#[test]
fn dropped_connections_are_unavailable_then_recovered() {
    let Some(pg) = PgSchema::new() else { return };
    // Its own application name, so that only its connections are dropped (other tests run
    // beside it on the same server).
    let url = format!("{}&application_name={}", pg.url, pg.schema);
    let store = PgStore::open(&url, StoreOptions::default()).unwrap();
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let v = [0.25f32; 8];
    // Fill the pool with a few idle connections.
    std::thread::scope(|s| {
        for i in 0..4 {
            let store = &store;
            s.spawn(move || {
                store.add_image(db, &image(&format!("e{i}"), &v)).unwrap();
            });
        }
    });
    let mut admin = pg.admin();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND application_name = $1",
            &[&pg.schema],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the store had connections to drop");
    std::thread::sleep(Duration::from_millis(200));
    let mut failures = Vec::new();
    let mut recovered = false;
    for _ in 0..(MAX_CONNECTIONS + 2) {
        match store.get_db(db) {
            Ok(info) => {
                assert_eq!(info.unwrap().image_count, 4);
                recovered = true;
                break;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(recovered, "never recovered: {failures:?}");
    assert!(
        failures
            .iter()
            .all(|e| matches!(e, StoreError::Unavailable(_))),
        "{failures:?}"
    );
    // Writes work again too.
    store.add_image(db, &image("after", &v)).unwrap();
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 5);
}

/// Two stores on one schema act as two nodes of one service: ids from either are unique and
/// increase in commit order; what one writes the other reads at once.
#[test]
fn two_nodes_share_one_store() {
    let Some(pg) = PgSchema::new() else { return };
    let a = PgStore::open(&pg.url, StoreOptions::default()).unwrap();
    let b = PgStore::open(&pg.url, StoreOptions::default()).unwrap();
    let db = DbRef::new("t", "default");
    a.create_db(db).unwrap();
    assert!(matches!(b.create_db(db), Err(StoreError::DbExists(_))));
    let v = [0.5f32; 8];
    let ids: Vec<Vec<crate::store::DataId>> = std::thread::scope(|s| {
        [&a, &b]
            .map(|node| {
                s.spawn(move || {
                    (0..50)
                        .map(|i| {
                            node.add_image(db, &image(&format!("n{i}"), &v))
                                .unwrap()
                                .data_id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    let mut all: Vec<_> = ids.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 100);
    assert_eq!(
        b.list_ids(db, crate::embedding::Descriptor::Semantic)
            .unwrap(),
        all
    );
    assert_eq!(a.get_db(db).unwrap().unwrap().image_count, 100);
    b.delete_db(db).unwrap();
    assert!(a.get_db(db).unwrap().is_none());
}
