//! `imgsearch backup DEST` and `imgsearch restore SRC`: a consistent copy of a data
//! directory taken while the server runs and writes, and putting one back.
//!
//! A backup is a directory: `imgsearch.db` (one consistent snapshot of the store,
//! `store::sqlite::backup`), the access-keys file and the list-token key when the data
//! directory has them (mode 0600), the ANN index snapshots (`indexes/`), and `backup.json`
//! (what it holds, with every file's size and sha256). It is written under a temporary name
//! and renamed into place when complete, so a path named DEST is always a whole backup.
//! Index snapshots are copied after the store: a snapshot older or newer than the store copy
//! is reconciled with it at the restored server's start (images added or removed in
//! between are re-indexed), and one caught mid-rewrite is rebuilt from the store; either way
//! the store decides what exists. Nonces are not copied (see docs/security.md).
//!
//! Not here: the SQLite copy itself, or anything a running server does.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::keys::KEYS_FILE_NAME;
use crate::service::list_token::KEY_FILE_NAME as LIST_TOKEN_KEY_FILE;
use crate::store::sqlite::backup::{copy_store_file, summarize_store_file, StoreCopySummary};
use crate::store::sqlite::DB_FILE_NAME;

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "backup.json";
/// Version of the backup layout; `restore` refuses one it does not know.
const FORMAT: u32 = 1;
/// The index snapshots' directory inside a data directory (and a backup).
const INDEXES_DIR: &str = "indexes";
/// Secrets: copied with mode 0600.
const SECRET_FILES: [&str; 2] = [KEYS_FILE_NAME, LIST_TOKEN_KEY_FILE];

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The running (or stopped) server's data directory.
    #[arg(long, env = "IMGSEARCH_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Where to write the backup: a directory that must not exist yet.
    pub dest: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A directory written by `imgsearch backup`.
    pub src: PathBuf,
    /// The data directory to restore into: it must not hold a store (stop the server and
    /// move the old directory away first).
    #[arg(long, env = "IMGSEARCH_DATA", default_value = "./data")]
    pub data: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    imgsearch_version: String,
    /// Seconds since the Unix epoch when the store snapshot was taken.
    created_unix: u64,
    source: String,
    store: StoreCopySummary,
    files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    path: String,
    bytes: u64,
    sha256: String,
}

pub fn run_backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let manifest = backup(&args.data, &args.dest)?;
    println!(
        "{}",
        serde_json::json!({
            "backup": args.dest.display().to_string(),
            "databases": manifest.store.databases,
            "images": manifest.store.images,
            "files": manifest.files.len(),
            "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest = restore(&args.src, &args.data)?;
    println!(
        "{}",
        serde_json::json!({
            "restored": args.data.display().to_string(),
            "databases": manifest.store.databases,
            "images": manifest.store.images,
            "taken_unix": manifest.created_unix,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a backup of `data` to `dest` (which must not exist).
fn backup(data: &Path, dest: &Path) -> anyhow::Result<Manifest> {
    if dest.exists() {
        bail!(
            "{} already exists; a backup never overwrites anything, choose a new path",
            dest.display()
        );
    }
    let name = dest
        .file_name()
        .with_context(|| format!("{} names no directory", dest.display()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let result = write_backup(data, &partial);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    fs::rename(&partial, dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    sync_dir(&parent)?;
    Ok(manifest)
}

fn write_backup(data: &Path, out: &Path) -> anyhow::Result<Manifest> {
    let created_unix = unix_now();
    let store = copy_store_file(data, &out.join(DB_FILE_NAME))?;
    for secret in SECRET_FILES {
        copy_if_present(&data.join(secret), &out.join(secret), true)?;
    }
    copy_tree(&data.join(INDEXES_DIR), &out.join(INDEXES_DIR))?;
    let mut files = Vec::new();
    list_files(out, out, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT,
        imgsearch_version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix,
        source: data.display().to_string(),
        store,
        files,
    };
    write_synced(
        &out.join(MANIFEST),
        &serde_json::to_vec_pretty(&manifest)?,
        false,
    )?;
    sync_tree_dirs(out)?;
    Ok(manifest)
}

/// Puts the backup in `src` into `data`, after checking every file against the manifest.
fn restore(src: &Path, data: &Path) -> anyhow::Result<Manifest> {
    let manifest_path = src.join(MANIFEST);
    let text = fs::read(&manifest_path).with_context(|| {
        format!(
            "{} is not a backup: cannot read {}",
            src.display(),
            manifest_path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} has backup format {}; this imgsearch reads format {FORMAT}",
            src.display(),
            manifest.format
        );
    }
    for f in &manifest.files {
        let path = within(src, &f.path)?;
        let (bytes, sha256) = hash_file(&path)
            .with_context(|| format!("backup file {} is unreadable", path.display()))?;
        if bytes != f.bytes || sha256 != f.sha256 {
            bail!(
                "backup file {} does not match the manifest ({bytes} bytes, sha256 {sha256}; \
                 expected {} bytes, {}): the backup is damaged",
                path.display(),
                f.bytes,
                f.sha256
            );
        }
    }
    summarize_store_file(&src.join(DB_FILE_NAME))?;
    if data.join(DB_FILE_NAME).exists() {
        bail!(
            "{} already holds a store; stop its server and move the directory away before \
             restoring into it",
            data.display()
        );
    }
    fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    // The store goes last: an interrupted restore leaves no store behind and can be rerun.
    let mut order: Vec<&FileEntry> = manifest.files.iter().collect();
    order.sort_by_key(|f| f.path == DB_FILE_NAME);
    for f in order {
        let from = within(src, &f.path)?;
        let to = within(data, &f.path)?;
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let secret = SECRET_FILES.contains(&f.path.as_str());
        let staged = to.with_file_name(format!(
            ".{}.restoring",
            to.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        copy_synced(&from, &staged, secret)?;
        fs::rename(&staged, &to)
            .with_context(|| format!("cannot rename {} to {}", staged.display(), to.display()))?;
    }
    sync_tree_dirs(data)?;
    Ok(manifest)
}

/// `rel` (a manifest path) under `root`, refusing anything that could leave it.
fn within(root: &Path, rel: &str) -> anyhow::Result<PathBuf> {
    let mut out = root.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            bail!("the manifest names a path outside the backup: {rel:?}");
        }
        out.push(part);
    }
    Ok(out)
}

fn copy_if_present(from: &Path, to: &Path, secret: bool) -> anyhow::Result<bool> {
    match copy_synced(from, to, secret) {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// Copies a directory tree, skipping files that vanish meanwhile (a snapshot generation the
/// server replaced while we copied: the restored server rebuilds that index).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", from.display())),
    };
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let kind = entry.file_type()?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            copy_if_present(&src, &dst, false)?;
        }
    }
    Ok(())
}

/// Copies one file and fsyncs the copy; errors carry the `io::Error` for `is_not_found`.
fn copy_synced(from: &Path, to: &Path, secret: bool) -> anyhow::Result<()> {
    let mut input = File::open(from).map_err(anyhow::Error::from)?;
    let mut output = create_file(to, secret)?;
    io::copy(&mut input, &mut output)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    output
        .sync_all()
        .with_context(|| format!("cannot fsync {}", to.display()))
}

fn write_synced(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = create_file(path, secret)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn create_file(path: &Path, secret: bool) -> anyhow::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let (bytes, sha256) = hash_file(&path)?;
        out.push(FileEntry {
            path: rel,
            bytes,
            sha256,
        });
    }
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// fsyncs every directory of a tree (new entries are durable only once their directory is).
fn sync_tree_dirs(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree_dirs(&entry.path())?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbRef, ImageStore, NewImage, SqliteStore};

    fn store_with(data: &Path, n: usize) -> SqliteStore {
        let store = SqliteStore::open(data).unwrap();
        let db = DbRef::new("AKID", "shop");
        store.create_db(db).unwrap();
        for i in 0..n {
            store
                .add_image(
                    db,
                    &NewImage {
                        entity_id: &format!("e{i}"),
                        extra_data: "",
                        image_url: "",
                        embedding: &[0.25; 8],
                        copy_embedding: None,
                        thumbnail: None,
                        attributes: &crate::store::Attributes::NONE,
                    },
                )
                .unwrap();
        }
        store
    }

    #[test]
    fn backup_then_restore_round_trips_store_secrets_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let _store = store_with(&data, 3);
        fs::write(data.join(LIST_TOKEN_KEY_FILE), [7u8; 32]).unwrap();
        fs::create_dir_all(data.join("indexes/x/copy")).unwrap();
        fs::write(data.join("indexes/x/copy/snapshot.json"), b"{}").unwrap();

        let dest = dir.path().join("b1");
        let m = backup(&data, &dest).unwrap();
        assert_eq!((m.store.databases, m.store.images), (1, 3));
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                DB_FILE_NAME,
                "indexes/x/copy/snapshot.json",
                LIST_TOKEN_KEY_FILE
            ]
        );
        // No partial directory is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(backup(&data, &dest)
            .unwrap_err()
            .to_string()
            .contains("already exists"));

        let target = dir.path().join("restored");
        restore(&dest, &target).unwrap();
        assert_eq!(
            fs::read(target.join(LIST_TOKEN_KEY_FILE)).unwrap(),
            [7u8; 32]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(target.join(LIST_TOKEN_KEY_FILE))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert!(target.join("indexes/x/copy/snapshot.json").is_file());
        let restored = SqliteStore::open(&target).unwrap();
        assert_eq!(restored.list_dbs("AKID").unwrap()[0].image_count, 3);
        // A second restore into a directory with a store is refused, the store untouched.
        drop(restored);
        let err = restore(&dest, &target).unwrap_err().to_string();
        assert!(err.contains("already holds a store"), "{err}");
    }

    #[test]
    fn restore_refuses_a_damaged_backup_and_paths_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let _store = store_with(&data, 2);
        let dest = dir.path().join("b");
        backup(&data, &dest).unwrap();
        let db = dest.join(DB_FILE_NAME);
        let mut bytes = fs::read(&db).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&db, bytes).unwrap();
        let target = dir.path().join("t");
        let err = restore(&dest, &target).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(!target.join(DB_FILE_NAME).exists());

        assert!(within(&dest, "../etc/passwd").is_err());
        assert!(within(&dest, "/abs").is_err());
        assert!(restore(&dir.path().join("nope"), &target)
            .unwrap_err()
            .to_string()
            .contains("is not a backup"));
    }
}
