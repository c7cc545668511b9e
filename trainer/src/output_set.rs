//! A run's output folder, committed as one: never a mix of two runs' files, never half a set.
//!
//! Every file of a run is written into a fresh staging folder next to `--out`
//! (`.NAME.tmp-PID-NANOS`), then each file, the staging folder, and finally a `manifest.json`
//! listing every file with its size and SHA-256 are flushed to disk. The staging folder then
//! takes the place of `--out` in one step: on Linux and macOS the two folders are *exchanged*
//! (`renameat2(RENAME_EXCHANGE)` / `renamex_np(RENAME_SWAP)`), so at every instant `--out` is a
//! complete set — the old one, then the new one — and the old set, now under the staging name, is
//! deleted. The parent folder is flushed after the switch.
//!
//! Why a whole folder and not a manifest checked by readers: a folder switch needs no cooperation
//! from readers — the firmware's build, a user's `cp out/mlp-int8.bin`, the benchmarks all see one
//! run's files without knowing about the manifest. The manifest is there for people and tests to
//! check a set, and to recognise a folder the trainer owns (the switch replaces the whole folder,
//! so a folder holding anything else is refused rather than deleted).
//!
//! A run holds `.NAME.lock` (an OS file lock, released by the kernel when a process dies) from
//! its start to its end, so a second run into the same folder stops at once with "another run
//! is writing to …" instead of interleaving. A run that was killed leaves its staging folder; the
//! next run into that folder removes it before it starts. Where the exchange is not available
//! (other systems, file systems without it), the switch is two renames (`--out` aside as
//! `.NAME.old-…`, the staging folder in its place): between them `--out` is missing, never mixed,
//! and the next run puts the old set back if a crash fell in between.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::output::{F32_FILE, INT4_FILE, INT8_FILE, REPORT_FILE, write_atomic};

/// The set's table of contents, written last.
pub const MANIFEST: &str = "manifest.json";

/// Files earlier versions of the trainer wrote into `--out` (before sets had a manifest): a
/// folder holding only these (and their leftovers) is the trainer's to replace.
fn legacy_files() -> impl Iterator<Item = &'static str> {
    [INT8_FILE, INT4_FILE, F32_FILE, REPORT_FILE]
        .into_iter()
        .chain(crate::plots::FILES)
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// This run's identity: when it started and its process.
    pub run: String,
    /// Every file of the set but the manifest, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// One file of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the set's folder, `/`-separated.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads `dir`'s manifest.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Whether `dir` holds exactly the files this manifest lists, with their contents.
    pub fn check(&self, dir: &Path) -> Result<()> {
        let mut found = Tree::read(dir)?.files;
        found.retain(|p| p != MANIFEST);
        let listed: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        if found != listed {
            bail!(
                "{} holds {found:?}, its manifest lists {listed:?}",
                dir.display()
            );
        }
        for entry in &self.files {
            let path = dir.join(&entry.path);
            let (bytes, sha256) = digest(open(&path)?, &path)?;
            if (bytes, sha256.as_str()) != (entry.bytes, entry.sha256.as_str()) {
                bail!(
                    "{} in {} is not the file its manifest lists",
                    entry.path,
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// What lies below a folder.
struct Tree {
    /// The files, relative and `/`-separated, sorted.
    files: Vec<String>,
    /// The folder itself and every folder below it.
    dirs: Vec<PathBuf>,
}

impl Tree {
    fn read(dir: &Path) -> Result<Self> {
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let entry = entry?;
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type()?.is_dir() {
                    pending.push((entry.path(), format!("{name}/")));
                } else {
                    files.push(name);
                }
            }
            dirs.push(dir);
        }
        files.sort();
        Ok(Self { files, dirs })
    }
}

/// The size and SHA-256 of what `file` holds from where it stands.
fn digest(mut file: File, path: &Path) -> Result<(u64, String)> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((bytes.len() as u64, crate::idx::sha256_hex(&bytes)))
}

/// Opens `path` for reading.
fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Flushes a folder's entries (names created, renamed, removed) to disk. Systems that cannot
/// open a folder as a file (Windows) order their metadata otherwise: nothing to do there.
fn sync_dir(dir: &Path) -> Result<()> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot flush folder {}", dir.display()))?;
    }
    Ok(())
}

/// `path` made absolute, with its existing part's links resolved: two spellings of one file
/// compare equal, even when the file does not exist yet.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for known in (1..=parts.len()).rev() {
        let Ok(mut real) = std::fs::canonicalize(parts[..known].iter().collect::<PathBuf>()) else {
            continue;
        };
        for part in &parts[known..] {
            match part {
                Component::ParentDir => {
                    real.pop();
                }
                Component::Normal(name) => real.push(name),
                _ => {}
            }
        }
        return Ok(real);
    }
    Ok(absolute)
}

/// Bytes free for this user on `dir`'s file system (`None` where it cannot be asked).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Fails unless `dir`'s file system has `need` bytes free for this user.
pub fn check_free_space(dir: &Path, need: u64, what: &str) -> Result<()> {
    match free_bytes(dir) {
        Some(free) if free < need => bail!(
            "not enough free space for {what}: {} needs about {:.1} MB, {:.1} MB are free",
            dir.display(),
            need as f64 / 1e6,
            free as f64 / 1e6
        ),
        _ => Ok(()),
    }
}

/// Fails unless a file can be written at `path` (a regular file, or nothing yet; a pipe or a
/// device is written through as it is) with `need` bytes free: its folder is created, and a probe
/// of a few kilobytes written, flushed and removed there (a zero-byte file can be created on a
/// full disk).
pub fn check_writable_file(path: &Path, need: u64) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("{} is a folder, not a file", path.display()),
        Ok(m) if !m.is_file() => return Ok(()),
        _ => {}
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The folder stays: the file is written into it after the run, by a write that does not
    // create folders.
    probe_dir(dir, need)
}

/// Fails unless files can be written into folder `dir` with `need` bytes free; see
/// [`check_writable_file`]. A folder that did not exist is created for the probe and removed
/// again (whoever writes there later creates it).
pub fn check_writable_dir(dir: &Path, need: u64) -> Result<()> {
    // The first folder of `dir` that does not exist yet: created for the probe, removed after it,
    // so a run refused later leaves no empty folder behind (the run creates it again to write).
    let created = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(Path::to_path_buf);
    let checked = probe_dir(dir, need);
    if let Some(first) = created {
        let _ = std::fs::remove_dir_all(first);
    }
    checked
}

/// [`check_writable_dir`]'s work: create, probe, count the free space.
fn probe_dir(dir: &Path, need: u64) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    crate::output::remove_dead_temporaries(dir, PROBE);
    let probe = dir.join(format!("{PROBE}{}", unique_suffix()));
    let written = File::create(&probe).and_then(|mut f| {
        f.write_all(&[0; 4096])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.with_context(|| format!("cannot write in {}", dir.display()))?;
    check_free_space(dir, need, "the run's files")
}

/// The name of a writability probe, before its process and moment.
const PROBE: &str = ".write-probe-";

/// Whether `dir` is the root of a mounted file system (a container's volume, say): its device
/// differs from its parent's. (A bind mount of the same file system is not seen.)
pub fn is_mount_point(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let parent = dir.parent().unwrap_or(dir);
        match (std::fs::metadata(dir), std::fs::metadata(parent)) {
            (Ok(d), Ok(p)) => d.dev() != p.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

/// A name unique to this process and moment.
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Whether `name` is `.{base}.{kind}-PID-NANOS`, as this module names its staging folders.
fn is_ours(name: &str, base: &str, kind: &str) -> bool {
    name.strip_prefix(&format!(".{base}.{kind}-"))
        .and_then(|s| s.split_once('-'))
        .is_some_and(|(pid, nanos)| {
            [pid, nanos]
                .iter()
                .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Whether a file in `--out` is a leftover of an earlier version's writes (`.NAME.tmp-PID`,
/// `.write-test`).
fn is_legacy_leftover(name: &str) -> bool {
    name == ".write-test"
        || name.rsplit_once(".tmp-").is_some_and(|(head, pid)| {
            head.starts_with('.') && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The run lock: `.NAME.lock` next to the folder, locked by the OS for as long as the run lives.
#[derive(Debug)]
struct RunLock {
    path: PathBuf,
    file: File,
}

impl RunLock {
    fn take(path: PathBuf, out: &Path) -> Result<Self> {
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot create lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let who = if holder.is_empty() {
                        "another run".to_string()
                    } else {
                        format!("another run (process {holder})")
                    };
                    bail!(
                        "{who} is writing to {}: wait for it to finish, or choose another --out",
                        out.display()
                    );
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            // The lock file is removed when a run ends: a run that opened it just before then
            // holds a lock on a file no longer there, and must try again.
            if Self::is_current(&file, &path) {
                file.set_len(0)?;
                write!(file, "{}", std::process::id())?;
                return Ok(Self { path, file });
            }
        }
    }

    #[cfg(unix)]
    fn is_current(file: &File, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(held), Ok(named)) => (held.dev(), held.ino()) == (named.dev(), named.ino()),
            _ => false,
        }
    }

    #[cfg(not(unix))]
    fn is_current(_: &File, _: &Path) -> bool {
        true
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can hold it through this name. (Where a
        // held file cannot be removed, it stays: harmless, the next run locks it again.)
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// A run's output folder while the run writes it: files go into [`stage`](Self::stage)d paths,
/// and appear in `--out` together at [`commit`](Self::commit), or never.
#[derive(Debug)]
pub struct OutputSet {
    /// `--out` as the user wrote it, for messages and reports.
    shown: PathBuf,
    /// `--out`, resolved.
    out: PathBuf,
    parent: PathBuf,
    name: String,
    staging: PathBuf,
    run: String,
    committed: bool,
    /// What `--out` held at the start.
    previous: Vec<String>,
    _lock: RunLock,
}

impl OutputSet {
    /// Prepares to write a set into `out`: takes the run lock, removes what killed runs left,
    /// checks that `out` is a folder the trainer may replace (absent, empty, or holding a set it
    /// wrote), that its file system has `need` bytes free, and creates the staging folder.
    pub fn begin(out: &Path, need: u64) -> Result<Self> {
        let resolved = resolve(out)?;
        let (Some(parent), Some(name)) = (resolved.parent(), resolved.file_name()) else {
            bail!("--out {} cannot be replaced: name a folder", out.display());
        };
        let (parent, name) = (parent.to_path_buf(), name.to_string_lossy().into_owned());
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create output folder {}", out.display()))?;
        let lock = RunLock::take(parent.join(format!(".{name}.lock")), out)?;
        let mut set = Self {
            shown: out.to_path_buf(),
            out: resolved,
            parent,
            name,
            staging: PathBuf::new(),
            run: unique_suffix(),
            committed: false,
            previous: Vec::new(),
            _lock: lock,
        };
        set.recover()?;
        set.previous = set.check_owned()?;
        check_free_space(&set.parent, need, "the model files")?;
        set.staging = set.parent.join(format!(".{}.tmp-{}", set.name, set.run));
        std::fs::create_dir(&set.staging)
            .with_context(|| format!("cannot create output folder {}", out.display()))?;
        Ok(set)
    }

    /// Puts back a set a crash left aside mid-switch, and removes staging folders of dead runs.
    fn recover(&self) -> Result<()> {
        let mut aside = Vec::new();
        for entry in std::fs::read_dir(&self.parent)
            .with_context(|| format!("cannot list {}", self.parent.display()))?
        {
            let entry = entry?;
            let file_name = entry.file_name();
            let name = file_name.to_string_lossy();
            if is_ours(&name, &self.name, "old") {
                aside.push(entry.path());
            } else if is_ours(&name, &self.name, "tmp") {
                remove(&entry.path())?;
            }
        }
        for path in aside {
            if std::fs::symlink_metadata(&self.out).is_err() {
                std::fs::rename(&path, &self.out).with_context(|| {
                    format!(
                        "cannot restore {} from {}",
                        self.out.display(),
                        path.display()
                    )
                })?;
            } else {
                remove(&path)?;
            }
        }
        Ok(())
    }

    /// Refuses a `--out` holding anything the trainer did not write: the switch replaces the
    /// whole folder. Returns what it holds (the set the commit will replace), sorted.
    fn check_owned(&self) -> Result<Vec<String>> {
        let meta = match std::fs::metadata(&self.out) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot use {}", self.shown.display()));
            }
        };
        if !meta.is_dir() {
            bail!(
                "cannot create output folder {}: it is a file",
                self.shown.display()
            );
        }
        if is_mount_point(&self.out) {
            bail!(
                "--out {} is a mount point, which cannot be swapped for the new set: name a \
                 folder inside it (e.g. {})",
                self.shown.display(),
                self.shown.join("models").display()
            );
        }
        let ours: Vec<String> = match Manifest::read(&self.out) {
            Ok(manifest) => manifest
                .files
                .into_iter()
                .map(|f| f.path.split('/').next().unwrap_or_default().to_string())
                .chain([MANIFEST.to_string()])
                .collect(),
            Err(_) => legacy_files().map(String::from).collect(),
        };
        let (held, foreign): (Vec<OsString>, Vec<OsString>) = std::fs::read_dir(&self.out)
            .with_context(|| format!("cannot list {}", self.shown.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| !is_legacy_leftover(&n.to_string_lossy()))
            .partition(|n| ours.iter().any(|o| *o == n.to_string_lossy()));
        if !foreign.is_empty() {
            let mut names: Vec<String> = foreign
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.truncate(5);
            bail!(
                "--out {} holds files the trainer did not write ({}): a run replaces the whole \
                 folder, so choose a new or empty one",
                self.shown.display(),
                names.join(", ")
            );
        }
        let mut held: Vec<String> = held
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != MANIFEST)
            .collect();
        held.sort();
        Ok(held)
    }

    /// What `--out` held when the set began, manifest aside (file and folder names, sorted):
    /// what the commit replaces.
    pub fn previous(&self) -> &[String] {
        &self.previous
    }

    /// `--out` as the user wrote it.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// `--out`, resolved.
    pub fn resolved(&self) -> &Path {
        &self.out
    }

    /// This run's identity, as the manifest will hold it.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Where the file `relative` (to `--out`) is written before the commit; its folder exists.
    pub fn stage(&self, relative: &Path) -> Result<PathBuf> {
        let path = self.staging.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
        Ok(path)
    }

    /// Where the file `relative` will be once committed, as the user names it.
    pub fn final_path(&self, relative: &Path) -> PathBuf {
        self.shown.join(relative)
    }

    /// Makes every staged file visible in `--out` at once; returns the manifest.
    pub fn commit(mut self) -> Result<Manifest> {
        let tree = Tree::read(&self.staging)?;
        let mut files = Vec::new();
        for path in tree.files {
            let full = self.staging.join(&path);
            let file = open(&full)?;
            file.sync_all()
                .with_context(|| format!("cannot flush {}", full.display()))?;
            let (bytes, sha256) = digest(file, &full)?;
            files.push(ManifestEntry {
                path,
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            run: self.run.clone(),
            files,
        };
        write_atomic(
            &self.staging.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        for dir in &tree.dirs {
            sync_dir(dir)?;
        }
        let old = self.switch()?;
        self.committed = true;
        sync_dir(&self.parent)?;
        // The old set, under a staging name now: gone, or the next run removes it.
        if let Some(old) = old {
            remove(&old)?;
        }
        Ok(manifest)
    }

    /// Puts the staging folder in `--out`'s place; returns where the old set went.
    fn switch(&self) -> Result<Option<PathBuf>> {
        let failed = || format!("cannot replace {}", self.shown.display());
        if std::fs::symlink_metadata(&self.out).is_err() {
            std::fs::rename(&self.staging, &self.out).with_context(failed)?;
            return Ok(None);
        }
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            let (staging, out) = (self.staging.as_path(), self.out.as_path());
            match renameat_with(CWD, staging, CWD, out, RenameFlags::EXCHANGE) {
                Ok(()) => return Ok(Some(self.staging.clone())),
                // A file system without the exchange: the two renames below.
                Err(e) if [rustix::io::Errno::INVAL, rustix::io::Errno::NOSYS].contains(&e) => {}
                Err(e) => return Err(std::io::Error::from(e)).with_context(failed),
            }
        }
        let aside = self.parent.join(format!(".{}.old-{}", self.name, self.run));
        std::fs::rename(&self.out, &aside).with_context(failed)?;
        std::fs::rename(&self.staging, &self.out).with_context(failed)?;
        Ok(Some(aside))
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        if !self.committed && !self.staging.as_os_str().is_empty() {
            // Best effort: the next run into this folder removes what is left.
            let _ = remove(&self.staging);
        }
    }
}

/// Removes a file or a folder with everything in it; an absent one is fine.
fn remove(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("output-set-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_set(out: &Path, files: &[(&str, &[u8])]) -> Result<Manifest> {
        let set = OutputSet::begin(out, 0)?;
        for (name, bytes) in files {
            std::fs::write(set.stage(Path::new(name))?, bytes)?;
        }
        set.commit()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_commit_replaces_the_whole_set_and_leaves_nothing_else() {
        let dir = temp("replace");
        let out = dir.join("out");
        write_set(&out, &[("mlp-int8.bin", b"old"), ("mlp-int4.bin", b"old4")]).unwrap();
        let manifest = write_set(&out, &[("mlp-int8.bin", b"new"), ("plots/a.png", b"p")]).unwrap();
        assert_eq!(entries(&out), ["manifest.json", "mlp-int8.bin", "plots"]);
        assert_eq!(std::fs::read(out.join("mlp-int8.bin")).unwrap(), b"new");
        assert_eq!(Manifest::read(&out).unwrap(), manifest);
        manifest.check(&out).unwrap();
        assert_eq!(
            entries(&dir),
            ["out"],
            "staging folders or the lock left behind"
        );
    }

    #[test]
    fn an_abandoned_set_changes_nothing_and_a_killed_runs_staging_is_removed() {
        let dir = temp("abandon");
        let out = dir.join("out");
        let before = write_set(&out, &[("mlp-int8.bin", b"old")]).unwrap();
        {
            let set = OutputSet::begin(&out, 0).unwrap();
            std::fs::write(set.stage(Path::new("mlp-int8.bin")).unwrap(), b"half").unwrap();
        }
        before.check(&out).unwrap();
        assert_eq!(entries(&dir), ["out"]);
        // What SIGKILL leaves: a staging folder and an aside set (killed between the renames).
        std::fs::create_dir(dir.join(".out.tmp-4242-17")).unwrap();
        std::fs::write(dir.join(".out.tmp-4242-17/mlp-int8.bin"), b"x").unwrap();
        std::fs::rename(&out, dir.join(".out.old-4242-17")).unwrap();
        std::fs::write(dir.join(".out.tmp-7.keep"), b"not ours").unwrap();
        let set = OutputSet::begin(&out, 0).unwrap();
        before.check(&out).unwrap();
        drop(set);
        assert_eq!(entries(&dir), [".out.tmp-7.keep", "out"]);
    }

    #[test]
    fn a_second_run_into_the_same_folder_stops_at_once_naming_the_first() {
        let out = temp("lock").join("out");
        let first = OutputSet::begin(&out, 0).unwrap();
        let err = OutputSet::begin(&out, 0).unwrap_err().to_string();
        assert!(
            err.contains(&format!("another run (process {})", std::process::id()))
                && err.contains("is writing to"),
            "{err}"
        );
        drop(first);
        OutputSet::begin(&out, 0).unwrap();
    }

    #[test]
    fn a_folder_with_other_files_is_refused_not_replaced() {
        let out = temp("foreign");
        std::fs::write(out.join("thesis.tex"), b"years of work").unwrap();
        std::fs::write(out.join("mlp-int8.bin"), b"m").unwrap();
        let err = OutputSet::begin(&out, 0).unwrap_err().to_string();
        assert!(
            err.contains("thesis.tex") && err.contains("did not write"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(out.join("thesis.tex")).unwrap(),
            b"years of work"
        );
        // An earlier version's set and its leftovers are the trainer's own.
        std::fs::remove_file(out.join("thesis.tex")).unwrap();
        std::fs::write(out.join(".mlp-int8.bin.tmp-123"), b"").unwrap();
        std::fs::write(out.join(".write-test"), b"").unwrap();
        write_set(&out, &[("mlp-int8.bin", b"new")]).unwrap();
        assert_eq!(entries(&out), ["manifest.json", "mlp-int8.bin"]);
    }

    #[test]
    fn a_probe_leaves_nothing_and_removes_the_probes_of_killed_runs() {
        let dir = temp("probe");
        // Above Linux's largest process number: cannot be alive. Process 1 always is.
        std::fs::write(dir.join(".write-probe-4194305-17"), b"").unwrap();
        std::fs::write(dir.join(".write-probe-1-17"), b"").unwrap();
        check_writable_dir(&dir, 0).unwrap();
        assert_eq!(entries(&dir), [".write-probe-1-17"]);
        check_writable_dir(&dir.join("plots/deep"), 0).unwrap();
        assert!(
            !dir.join("plots").exists(),
            "a probed new folder stays behind"
        );
        check_writable_file(&dir.join("new/report.json"), 0).unwrap();
        assert_eq!(entries(&dir.join("new")), Vec::<String>::new());
        let err = check_writable_file(&dir, 0).unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
    }

    #[test]
    fn a_mount_point_is_told_apart_from_a_folder() {
        assert!(!is_mount_point(&temp("mount")));
        if Path::new("/proc/self").exists() {
            assert!(is_mount_point(Path::new("/proc")));
        }
    }

    #[test]
    fn too_little_free_space_is_refused_before_anything_is_written() {
        let out = temp("space").join("out");
        let err = OutputSet::begin(&out, u64::MAX / 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not enough free space"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn a_manifest_catches_a_changed_missing_or_extra_file() {
        let out = temp("check").join("out");
        let manifest = write_set(&out, &[("a", b"1"), ("b", b"2")]).unwrap();
        std::fs::write(out.join("a"), b"3").unwrap();
        assert!(manifest.check(&out).is_err());
        std::fs::write(out.join("a"), b"1").unwrap();
        manifest.check(&out).unwrap();
        std::fs::write(out.join("c"), b"").unwrap();
        assert!(manifest.check(&out).is_err());
    }

    #[test]
    fn resolve_names_one_file_one_way() {
        let dir = temp("resolve");
        std::fs::create_dir(dir.join("a")).unwrap();
        let here = resolve(&dir.join("a/../a/x/y.json")).unwrap();
        assert_eq!(here, resolve(&dir).unwrap().join("a/x/y.json"));
    }
}
