//! What the relay knows: a scan of every record it stores for accounts and rooms found
//! together (decision 0013). `hearth-relay inspect` prints it; the end-to-end tests run
//! the same scan over a relay's store and its log.
//!
//! The scan does not trust the store's own idea of its records: it looks at the raw bytes
//! of every key and value of every table for
//!
//! - an **account**: a key the relay knows (its accounts and the keys they rotated away
//!   from), as 32 raw bytes or in hex, its SHA-256 (raw, in hex, or the 16-hex-digit short
//!   id the logs and the audit feed use), or its handle;
//! - a **room**: an id of a room the relay keeps, as 16 raw bytes or in hex.
//!
//! A record holding both links an account to a room. Handles shorter than
//! [`SHORT_HANDLE`] characters are counted only as a stored string (after their postcard
//! length byte, or as a whole key or value) or as a whole word of text, so that two
//! letters in a ciphertext are not taken for a person.

use aho_corasick::AhoCorasick;
use hearth_protocol::{AccountKey, Handle, RoomId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Handles shorter than this are matched only where they stand alone (see the module).
pub const SHORT_HANDLE: usize = 6;

/// Tables that still link accounts to rooms by design. Since part 5 of decision 0013
/// (room admins are per-room pseudonyms, a reverted commit's author is removed by a
/// commit instead of barred, and a listing names no account) only `legacy_admins`: the
/// owner accounts of rooms of a store migrated from format 2, each row until that owner's
/// client connects and sets the room's admins by pseudonym. A store created since holds
/// none; any other link found is unexpected.
pub const REMAINING_LINKS: [&str; 1] = ["legacy_admins"];

/// What a table holds, as far as linking goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// No record holds both an account and a room.
    NoLink,
    /// Records link accounts to rooms, and the table is one of [`REMAINING_LINKS`].
    Remaining,
    /// Records link accounts to rooms where nothing should.
    Links,
}

/// One table (or one log) scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableReport {
    /// The table's name.
    pub table: String,
    /// Records in it.
    pub records: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Records holding an account.
    pub with_account: u64,
    /// Records holding a room id.
    pub with_room: u64,
    /// Records holding both.
    pub linking: u64,
    /// What that means.
    pub verdict: Verdict,
}

/// The whole scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReport {
    /// Accounts the relay knows (current and retired keys).
    pub accounts: u64,
    /// Rooms the relay keeps.
    pub rooms: u64,
    /// Per table, in the store's order.
    pub tables: Vec<TableReport>,
    /// The blob store (attachments, decision 0014): per room, files and bytes. Blob files
    /// are named by room and blob id and hold no account.
    pub blobs: Vec<RoomBlobs>,
}

/// The attachments one room keeps at the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomBlobs {
    /// The room.
    pub room: RoomId,
    /// Blobs held, complete or being uploaded.
    pub files: u64,
    /// Bytes charged to the room for them (whole blobs, reserved when an upload begins).
    pub bytes: u64,
    /// Of those, uploads not finished yet.
    pub unfinished: u64,
}

impl InspectReport {
    /// The tables whose records link accounts to rooms where nothing should.
    pub fn unexpected_links(&self) -> Vec<&TableReport> {
        self.tables
            .iter()
            .filter(|t| t.verdict == Verdict::Links)
            .collect()
    }

    /// The line `hearth-relay inspect` ends with.
    pub fn summary(&self) -> String {
        let records: u64 = self.tables.iter().map(|t| t.records).sum();
        let bytes: u64 = self.tables.iter().map(|t| t.bytes).sum();
        let remaining: Vec<&str> = self
            .tables
            .iter()
            .filter(|t| t.verdict == Verdict::Remaining)
            .map(|t| t.table.as_str())
            .collect();
        let unexpected = self.unexpected_links();
        let head = format!(
            "{} tables, {records} records, {bytes} bytes; {} accounts, {} rooms: ",
            self.tables.len(),
            self.accounts,
            self.rooms
        );
        if unexpected.is_empty() {
            let rest = if remaining.is_empty() {
                String::new()
            } else {
                format!(
                    " (links the relay keeps by design: {})",
                    remaining.join(", ")
                )
            };
            format!("{head}no other record links an account to a room{rest}")
        } else {
            let names: Vec<&str> = unexpected.iter().map(|t| t.table.as_str()).collect();
            format!(
                "{head}RECORDS LINK ACCOUNTS TO ROOMS in {} (not expected: please report it)",
                names.join(", ")
            )
        }
    }
}

impl Verdict {
    /// How `hearth-relay inspect` says it.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::NoLink => "no account with a room",
            Verdict::Remaining => "links accounts to rooms (by design)",
            Verdict::Links => "LINKS ACCOUNTS TO ROOMS",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Account,
    Room,
    /// A handle short enough to need standing alone.
    ShortHandle,
}

/// What the scan looks for, built from the accounts and rooms the relay knows.
pub struct Markers {
    searcher: Option<AhoCorasick>,
    kinds: Vec<Kind>,
    accounts: u64,
    rooms: u64,
}

impl Markers {
    /// Markers for these accounts (with their handles, if known) and rooms.
    pub fn new<'a>(
        accounts: impl IntoIterator<Item = (AccountKey, Option<&'a Handle>)>,
        rooms: impl IntoIterator<Item = RoomId>,
    ) -> Self {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        let mut kinds = Vec::new();
        let mut add = |needle: Vec<u8>, kind: Kind| {
            needles.push(needle);
            kinds.push(kind);
        };
        let mut account_count = 0;
        for (key, handle) in accounts {
            account_count += 1;
            let hash = Sha256::digest(key.0);
            add(key.0.to_vec(), Kind::Account);
            add(hex::encode(key.0).into_bytes(), Kind::Account);
            add(hash.to_vec(), Kind::Account);
            add(hex::encode(hash).into_bytes(), Kind::Account);
            add(key.short().into_bytes(), Kind::Account);
            if let Some(handle) = handle {
                let kind = if handle.as_str().len() < SHORT_HANDLE {
                    Kind::ShortHandle
                } else {
                    Kind::Account
                };
                add(handle.as_str().as_bytes().to_vec(), kind);
            }
        }
        let mut room_count = 0;
        for room in rooms {
            room_count += 1;
            add(room.0.to_vec(), Kind::Room);
            add(hex::encode(room.0).into_bytes(), Kind::Room);
        }
        let searcher = (!needles.is_empty())
            .then(|| AhoCorasick::new(&needles).ok())
            .flatten();
        Self {
            searcher,
            kinds,
            accounts: account_count,
            rooms: room_count,
        }
    }

    /// Whether `bytes` (one key or value, or one log line) holds an account and a room.
    pub fn find(&self, bytes: &[u8]) -> (bool, bool) {
        let Some(searcher) = &self.searcher else {
            return (false, false);
        };
        let (mut account, mut room) = (false, false);
        for m in searcher.find_overlapping_iter(bytes) {
            match self.kinds[m.pattern().as_usize()] {
                Kind::Account => account = true,
                Kind::Room => room = true,
                Kind::ShortHandle => account |= stands_alone(bytes, m.start(), m.end()),
            }
            if account && room {
                break;
            }
        }
        (account, room)
    }
}

/// Whether the match `start..end` of a short handle in `bytes` is a stored string or a
/// word: the whole of `bytes`, after its postcard length byte, or between characters
/// that cannot be part of a handle, in text.
fn stands_alone(bytes: &[u8], start: usize, end: usize) -> bool {
    let len = end - start;
    if start == 0 && end == bytes.len() {
        return true;
    }
    if start > 0 && usize::from(bytes[start - 1]) == len {
        return true;
    }
    let handle_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    std::str::from_utf8(bytes).is_ok()
        && (start == 0 || !handle_byte(bytes[start - 1]))
        && (end == bytes.len() || !handle_byte(bytes[end]))
}

/// Counts what one table (or log) holds; fed one record at a time.
pub struct TableScan<'m> {
    markers: &'m Markers,
    report: TableReport,
}

impl<'m> TableScan<'m> {
    /// Starts scanning the table `name`.
    pub fn new(markers: &'m Markers, name: &str) -> Self {
        Self {
            markers,
            report: TableReport {
                table: name.to_string(),
                records: 0,
                bytes: 0,
                with_account: 0,
                with_room: 0,
                linking: 0,
                verdict: Verdict::NoLink,
            },
        }
    }

    /// One record: its key and value are one record together (a room id in the key and
    /// an account in the value link them).
    pub fn record(&mut self, key: &[u8], value: &[u8]) {
        let r = &mut self.report;
        r.records += 1;
        r.bytes += (key.len() + value.len()) as u64;
        let (ka, kr) = self.markers.find(key);
        let (va, vr) = self.markers.find(value);
        let (account, room) = (ka || va, kr || vr);
        r.with_account += u64::from(account);
        r.with_room += u64::from(room);
        r.linking += u64::from(account && room);
    }

    /// The report, judged.
    pub fn finish(mut self) -> TableReport {
        let r = &mut self.report;
        r.verdict = if r.linking == 0 {
            Verdict::NoLink
        } else if REMAINING_LINKS.contains(&r.table.as_str()) {
            Verdict::Remaining
        } else {
            Verdict::Links
        };
        self.report
    }
}

/// Scans log text line by line (each line one record) with `markers`; the report is
/// named `name`.
pub fn scan_log(markers: &Markers, name: &str, text: &str) -> TableReport {
    let mut scan = TableScan::new(markers, name);
    for line in text.lines() {
        scan.record(&[], line.as_bytes());
    }
    scan.finish()
}

/// The report's lines as `hearth-relay inspect` prints them (the summary last).
pub fn render(report: &InspectReport) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<14} {:>9} {:>12} {:>9} {:>9} {:>9}  what it holds",
        "table", "records", "bytes", "accounts", "rooms", "both"
    )];
    for t in &report.tables {
        lines.push(format!(
            "{:<14} {:>9} {:>12} {:>9} {:>9} {:>9}  {}",
            t.table,
            t.records,
            t.bytes,
            t.with_account,
            t.with_room,
            t.linking,
            t.verdict.describe()
        ));
    }
    let (files, bytes) = report
        .blobs
        .iter()
        .fold((0, 0), |(f, b), r| (f + r.files, b + r.bytes));
    lines.push(format!(
        "files: {files} in {} rooms, {bytes} bytes (ciphertext; no account is stored with them)",
        report.blobs.len()
    ));
    if !report.blobs.is_empty() {
        lines.push(
            "  (`hearth-relay drop-files ROOM` deletes one room's files at once)".to_string(),
        );
    }
    for r in &report.blobs {
        lines.push(format!(
            "  room {}  {:>6} files {:>12} bytes{}",
            r.room.to_hex(),
            r.files,
            r.bytes,
            match r.unfinished {
                0 => String::new(),
                n => format!("  ({n} being uploaded)"),
            }
        ));
    }
    lines.push(report.summary());
    lines
}

impl Markers {
    /// Accounts and rooms the markers were built from.
    pub fn counts(&self) -> (u64, u64) {
        (self.accounts, self.rooms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_accounts_and_rooms_in_any_form() {
        let alice = AccountKey([1; 32]);
        let al = Handle::new("al").unwrap();
        let room = RoomId([9; 16]);
        let markers = Markers::new([(alice, Some(&al))], [room]);
        let mut both = alice.0.to_vec();
        both.extend_from_slice(&room.0);
        assert_eq!(markers.find(&both), (true, true));
        let line = format!("account={} room={room} joined", alice.short());
        assert_eq!(markers.find(line.as_bytes()), (true, true));
        assert_eq!(markers.find(b"handle al did it"), (true, false));
        // A short handle inside a word or random bytes is not a person.
        assert_eq!(markers.find(b"also"), (false, false));
        assert_eq!(
            markers.find(&[0xff, b'a', b'l', 0xfe, 0x00]),
            (false, false)
        );
        assert_eq!(markers.find(&[2, b'a', b'l', 0xfe]), (true, false));
        let mut scan = TableScan::new(&markers, "entries");
        scan.record(&room.0, &alice.0);
        scan.record(&room.0, b"ciphertext");
        let report = scan.finish();
        assert_eq!((report.records, report.linking), (2, 1));
        assert_eq!(report.verdict, Verdict::Links);
        // Since part 5 no table may link them, room admins included.
        let mut scan = TableScan::new(&markers, "room_admins");
        scan.record(&room.0, &alice.0);
        assert_eq!(scan.finish().verdict, Verdict::Links);
    }
}
