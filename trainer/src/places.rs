//! Every file and folder a command reads and writes, resolved once and checked before any work:
//! no output is one of the inputs, lies in an input folder or holds an input; no two outputs are
//! one or nest; and an output that exists already is a regular file or a folder — a device, a
//! FIFO or a socket is refused (a report written to `/dev/full` would fail only after the
//! training it reports).
//!
//! Paths are compared after [`resolve`] (absolute, links in their existing part followed), and
//! where both exist also by device and inode, so two spellings of one file, a symbolic link or a
//! hard link to it, count as one.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::output_set::resolve;

/// One path of a command, as given and resolved, and what it is for the messages.
#[derive(Debug)]
struct Entry {
    given: PathBuf,
    resolved: PathBuf,
    what: String,
}

impl Entry {
    fn new(path: &Path, what: String) -> Result<Self> {
        Ok(Self {
            given: path.to_path_buf(),
            resolved: resolve(path)?,
            what,
        })
    }

    /// Whether `self` and `other` name one file or folder, or one holds the other.
    fn meets(&self, other: &Entry) -> Option<&'static str> {
        if self.resolved == other.resolved || same_inode(&self.resolved, &other.resolved) {
            Some("is")
        } else if self.resolved.starts_with(&other.resolved) {
            Some("is inside")
        } else if other.resolved.starts_with(&self.resolved) {
            Some("holds")
        } else {
            None
        }
    }
}

/// Whether two existing paths are one file (a hard link to it, say).
fn same_inode(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// The inputs and outputs of one command; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Files {
    inputs: Vec<Entry>,
    outputs: Vec<Entry>,
}

impl Files {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A file or folder the command reads (`what`: how the messages name it, e.g. "the model").
    pub fn input(mut self, path: &Path, what: impl Into<String>) -> Result<Self> {
        self.inputs.push(Entry::new(path, what.into())?);
        Ok(self)
    }

    /// A file the command writes; refused at once if something other than a regular file
    /// (a folder, a device, a FIFO, a socket) is there.
    pub fn output(self, path: &Path, what: impl Into<String>) -> Result<Self> {
        self.written(path, what.into(), false)
    }

    /// A folder the command writes into; refused at once if something other than a folder is
    /// there.
    pub fn output_folder(self, path: &Path, what: impl Into<String>) -> Result<Self> {
        self.written(path, what.into(), true)
    }

    fn written(mut self, path: &Path, what: String, folder: bool) -> Result<Self> {
        let entry = Entry::new(path, what)?;
        if let Ok(m) = std::fs::metadata(path) {
            let (what, path) = (&entry.what, path.display());
            match (m.is_file(), m.is_dir(), folder) {
                (true, _, false) | (_, true, true) => {}
                (_, true, false) => bail!("{what} {path} is a folder: name a file"),
                (true, _, true) => bail!("{what} {path} is a file: name a folder"),
                _ => bail!(
                    "{what} {path} is not a regular file or folder (a device, a FIFO or a \
                     socket): name a {}",
                    if folder { "folder" } else { "file" }
                ),
            }
        }
        self.outputs.push(entry);
        Ok(self)
    }

    /// Checks the outputs against the inputs and each other.
    pub fn check(&self) -> Result<()> {
        for (i, out) in self.outputs.iter().enumerate() {
            for input in &self.inputs {
                if let Some(how) = out.meets(input) {
                    bail!(
                        "{} {} {how} {} {}: an output may not overwrite what the command reads",
                        out.what,
                        out.given.display(),
                        input.what,
                        input.given.display()
                    );
                }
            }
            for other in &self.outputs[..i] {
                match out.meets(other) {
                    Some("is") => bail!(
                        "{} and {} are one file, {}",
                        other.what,
                        out.what,
                        out.given.display()
                    ),
                    Some(_) => bail!(
                        "{} ({}) and {} ({}): one would be a folder of the other",
                        other.what,
                        other.given.display(),
                        out.what,
                        out.given.display()
                    ),
                    None => {}
                }
            }
        }
        Ok(())
    }
}
