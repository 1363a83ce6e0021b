//! `hearth send-file` and `hearth save` (decision 0014), and the progress they show.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use hearth_core::attachment::{human_size, FileMessage};
use hearth_core::Client;
use hearth_protocol::RoomId;
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::inert::inert;
use crate::output;
use crate::session;

/// Transfers of more than this many bytes show progress.
pub const PROGRESS_FROM: u64 = 4 * 1024 * 1024;

/// Progress of one transfer: a bar on this terminal's standard error when the command
/// runs here, else (inside the agent) a line to the caller at every quarter.
pub struct Transfer {
    bar: Option<indicatif::ProgressBar>,
    verb: &'static str,
    quarter: std::sync::atomic::AtomicU64,
    started: Instant,
}

impl Transfer {
    /// Progress for a transfer named by `verb` ("uploading", "downloading").
    pub fn new(verb: &'static str, json: bool) -> Self {
        use std::io::IsTerminal;
        let here = crate::console::caller().is_none();
        let bar = (here && !json && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::hidden();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(verb);
            bar
        });
        Self {
            bar,
            verb,
            quarter: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Told `done` of `total` bytes.
    pub fn update(&self, done: u64, total: u64) {
        if total < PROGRESS_FROM {
            return;
        }
        match &self.bar {
            Some(bar) => {
                if bar.is_hidden() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                let quarter = done * 4 / total;
                let last = self
                    .quarter
                    .swap(quarter, std::sync::atomic::Ordering::Relaxed);
                if quarter > last && quarter < 4 {
                    errln!(
                        "{} {}% ({} of {})",
                        self.verb,
                        quarter * 25,
                        human_size(done),
                        human_size(total)
                    );
                }
            }
        }
    }

    /// Ends the bar; returns the throughput text for `bytes` moved since the start (the
    /// time alone when none were: an empty file, or one resumed at its end).
    pub fn finish(&self, bytes: u64) -> String {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        if bytes == 0 {
            return format!("{secs:.1} s");
        }
        format!(
            "{:.1} s, {}/s",
            secs,
            human_size((bytes as f64 / secs) as u64)
        )
    }
}

/// `hearth send-file ROOM PATH [--caption TEXT]`.
pub async fn send_file(
    global: &GlobalArgs,
    room: &str,
    path: &Path,
    caption: Option<String>,
) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        let id = session::resolve_room(&client, room).await?;
        upload(&client, global.json, id, path, caption).await
    }
    .await;
    client.close().await;
    result
}

/// Sends one file to `room` with progress, and says so.
pub async fn upload(
    client: &Client,
    json: bool,
    room: RoomId,
    path: &Path,
    caption: Option<String>,
) -> Result<()> {
    let transfer = Transfer::new("uploading", json);
    let sent = client
        .send_file(room, path, caption, &|d, t| transfer.update(d, t))
        .await?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    // Over what this run moved, not what an earlier one did.
    let speed = transfer.finish(size.saturating_sub(sent.resumed_from));
    let room = client.room_ref(room).await;
    if json {
        outln!(
            "{}",
            output::with_room(
                &room,
                json!({"seq": sent.seq.0, "bytes": size, "resumed_from": sent.resumed_from})
            )
        );
    } else {
        let resumed = match sent.resumed_from {
            0 => String::new(),
            held => format!(
                " (resumed: the relay already held {} of an earlier try)",
                human_size(held)
            ),
        };
        outln!(
            "Sent {} ({}) to {} in {speed}{resumed}.",
            inert(&path.file_name().unwrap_or_default().to_string_lossy()),
            human_size(size),
            output::room_name(&room)
        );
    }
    Ok(())
}

/// `hearth save ID [DIR] [--room ROOM]`.
pub async fn save(
    global: &GlobalArgs,
    id: &str,
    dir: Option<&Path>,
    room: Option<&str>,
) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        let room = in_room(&client, room).await?;
        download(&client, global.json, id, dir, room).await
    }
    .await;
    client.close().await;
    result
}

/// The room `--room` names, if given.
async fn in_room(client: &Client, room: Option<&str>) -> Result<Option<RoomId>> {
    match room {
        Some(room) => Ok(Some(session::resolve_room(client, room).await?)),
        None => Ok(None),
    }
}

/// Saves the file `id` (of `room`, when given) into `dir` (the current directory when
/// none) with progress, and says where.
pub async fn download(
    client: &Client,
    json: bool,
    id: &str,
    dir: Option<&Path>,
    room: Option<RoomId>,
) -> Result<()> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let transfer = Transfer::new("downloading", json);
    let saved = client
        .save_file_in(room, id, &dir, &|d, t| transfer.update(d, t))
        .await?;
    let speed = transfer.finish(saved.size.saturating_sub(saved.resumed_from));
    if json {
        outln!(
            "{}",
            json!({"path": saved.path.to_string_lossy(), "bytes": saved.size, "resumed_from": saved.resumed_from})
        );
    } else {
        let resumed = match saved.resumed_from {
            0 => String::new(),
            had => format!(
                " (resumed after the {} an earlier try saved)",
                human_size(had)
            ),
        };
        outln!(
            "Saved {} ({}, checked) in {speed}{resumed}.",
            inert(&saved.path.to_string_lossy()),
            human_size(saved.size)
        );
    }
    Ok(())
}

/// `hearth open ID [--with PROGRAM] [--room ROOM]`.
pub async fn open(
    global: &GlobalArgs,
    id: &str,
    with: Option<&str>,
    room: Option<&str>,
) -> Result<()> {
    let client = session::connect(global).await?;
    let result = async {
        let room = in_room(&client, room).await?;
        open_file(&client, global.json, id, with, room).await
    }
    .await;
    client.close().await;
    result
}

/// Saves the file `id` (of `room`, when given) into the profile's `files` directory
/// (unless a checked copy is there already) and hands it to the desktop's opener, or to
/// `with`.
pub async fn open_file(
    client: &Client,
    json: bool,
    id: &str,
    with: Option<&str>,
    room: Option<RoomId>,
) -> Result<()> {
    let transfer = Transfer::new("downloading", json);
    let (path, _) = fetch_for_self(client, room, id, &|d, t| transfer.update(d, t)).await?;
    transfer.finish(0);
    if with.is_none() {
        refuse_launcher(&path, id)?;
    }
    match with {
        Some(program) => ::open::with_detached(&path, program),
        None => ::open::that_detached(&path),
    }
    .with_context(|| {
        format!(
            "cannot start a program to open {}: open it yourself, or name one with --with PROGRAM",
            inert(&path.to_string_lossy())
        )
    })?;
    if json {
        outln!("{}", json!({"path": path.to_string_lossy()}));
    } else {
        outln!("Opened {}.", inert(&path.to_string_lossy()));
    }
    Ok(())
}

/// The file `id` saved for this profile itself (in its
/// [`hearth_core::backup::FILES_DIR`], for `open` and previews), with its message: a
/// copy saved there before is used when its bytes still match.
pub async fn fetch_for_self(
    client: &Client,
    room: Option<RoomId>,
    id: &str,
    progress: hearth_core::client::Progress<'_>,
) -> Result<(PathBuf, FileMessage)> {
    let dir = client.profile().dir().join(hearth_core::backup::FILES_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let found = hearth_core::history::find_files(client.profile().store(), id)?;
    let (room, _, file) = hearth_core::client::one_file(found, room, id)?;
    if let Some(path) = saved_copy(&dir, &file) {
        return Ok((path, file));
    }
    let saved = client.save_file_in(Some(room), id, &dir, progress).await?;
    Ok((saved.path, file))
}

/// The room to look for file `id` in from a chat in `current`: that room when it has a
/// file with that id, else any room (the id alone then has to name one file).
pub fn room_of_chat(client: &Client, current: Option<RoomId>, id: &str) -> Option<RoomId> {
    let current = current?;
    let found = hearth_core::history::find_files(client.profile().store(), id).ok()?;
    found
        .iter()
        .any(|(room, _, _)| *room == current)
        .then_some(current)
}

/// Extensions of files that a desktop's opener runs, installs or follows as programs
/// rather than shows (Linux, macOS and Windows), compared in lower case.
const LAUNCHERS: &[&str] = &[
    "desktop",
    "sh",
    "bash",
    "zsh",
    "csh",
    "run",
    "appimage",
    "bin",
    "jar",
    "py",
    "pl",
    "command",
    "tool",
    "terminal",
    "app",
    "pkg",
    "dmg",
    "scpt",
    "applescript",
    "workflow",
    "webloc",
    "inetloc",
    "fileloc",
    "exe",
    "com",
    "bat",
    "cmd",
    "ps1",
    "psm1",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "msi",
    "msp",
    "scr",
    "pif",
    "lnk",
    "reg",
    "hta",
    "cpl",
    "url",
    "deb",
    "rpm",
];

/// Refuses to hand `path` (a file someone sent, its name theirs) to the desktop's
/// opener when its type is one the opener runs as a program: a sender could make
/// `open` start anything. Naming a program with `--with` is the way round.
pub fn refuse_launcher(path: &Path, id: &str) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if LAUNCHERS.contains(&ext.as_str()) {
        anyhow::bail!(
            "{} is a type your desktop would run as a program (.{}), so hearth does not open it: \
             look at it first (it is saved there), or name a program to open it with: \
             hearth open {} --with PROGRAM",
            inert(&path.to_string_lossy()),
            inert(&ext),
            inert(id)
        );
    }
    Ok(())
}

/// A copy of `file` saved in `dir` earlier, if its bytes still match.
fn saved_copy(dir: &Path, file: &FileMessage) -> Option<PathBuf> {
    use sha2::Digest as _;
    let name = hearth_core::attachment::safe_file_name(&file.name);
    let same = |path: &Path| {
        let Ok(mut reader) = std::fs::File::open(path) else {
            return false;
        };
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut reader, &mut hasher).is_ok()
            && <[u8; 32]>::from(hasher.finalize()) == file.sha256
    };
    // Other files of the same name took the first names: saving takes the first free one.
    let found = hearth_core::client::saved_file_names(dir, &name)
        .take(MAX_COPIES_LOOKED_AT)
        .take_while(|path| std::fs::symlink_metadata(path).is_ok())
        .find(|path| same(path));
    found
}

/// How many files of one name `open` looks through for a copy saved before.
const MAX_COPIES_LOOKED_AT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_saved_before_is_found_behind_other_files_of_its_name() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let file = FileMessage {
            blob: hearth_protocol::BlobId([1; 16]),
            key: hearth_core::attachment::FileKey([2; 32]),
            chunk_size: 65536,
            size: 4,
            sha256: sha2::Sha256::digest(b"ours").into(),
            name: "letter.pdf".into(),
            media_type: "application/pdf".into(),
            caption: None,
        };
        assert_eq!(saved_copy(dir.path(), &file), None);
        std::fs::write(dir.path().join("letter.pdf"), b"another letter").unwrap();
        assert_eq!(saved_copy(dir.path(), &file), None);
        std::fs::write(dir.path().join("letter (1).pdf"), b"ours").unwrap();
        assert_eq!(
            saved_copy(dir.path(), &file),
            Some(dir.path().join("letter (1).pdf"))
        );
    }

    #[test]
    fn launchers_are_not_handed_to_the_opener() {
        for name in [
            "a.desktop",
            "invoice.pdf.EXE",
            "x.Command",
            "run.sh",
            "b.lnk",
        ] {
            let e = refuse_launcher(Path::new(name), "1a2b3c4d").unwrap_err();
            assert!(e.to_string().contains("--with PROGRAM"), "{name}: {e}");
        }
        for name in ["a.pdf", "photo.jpg", "notes", "archive.tar.gz", ".desktop"] {
            assert!(
                refuse_launcher(Path::new(name), "1a2b3c4d").is_ok(),
                "{name}"
            );
        }
    }
}
