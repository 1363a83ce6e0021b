//! The decrypted contents of a backup file (someone else's backup, imported with the
//! passphrase they gave): every table's entries, the format version against the
//! envelope's, and the table names, as `hearth import-backup` reads them before it
//! creates the profile.
#![no_main]

use hearth_core::backup::fuzzing::read_contents;
use hearth_core::backup::BACKUP_VERSION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_contents(data, BACKUP_VERSION);
});
