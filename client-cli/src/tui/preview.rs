//! Pictures shown over the full-screen chat (`/preview ID`): decoded with `image` (PNG,
//! JPEG, GIF and WebP, pure Rust, bounded in size) and drawn by `viuer` with the kitty
//! or iTerm graphics protocol where the terminal says it has one, else with coloured
//! half blocks, which any colour terminal shows.
//!
//! The file is a checked copy the agent saved, but its bytes come from another person:
//! decoding is bounded (size and memory) and any failure is an error line, never a panic.

use std::io::Write as _;
use std::path::Path;

/// The largest picture decoded, per side, and the memory a decode may take.
const MAX_SIDE: u32 = 16_384;
const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Whether the terminal says it speaks the kitty graphics protocol (asked of the
/// environment only: a query would race the chat's own reading of the keyboard).
fn kitty() -> bool {
    std::env::var("TERM").is_ok_and(|t| t.contains("kitty"))
        || std::env::var_os("KITTY_WINDOW_ID").is_some()
        || std::env::var("TERM_PROGRAM").is_ok_and(|t| t == "ghostty" || t == "WezTerm")
}

/// Draws the picture at `path` in the top `height` rows of a `width`-column screen and
/// the line "any key goes back" under it. The caller has stopped reading the keyboard.
pub fn show(path: &Path, width: u16, height: u16) -> Result<(), String> {
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot read the picture: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| {
        format!("cannot show it here ({e}); /open shows it with your desktop's program")
    })?;
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(
        out,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    );
    let config = viuer::Config {
        absolute_offset: true,
        x: 0,
        y: 0,
        width: Some(u32::from(width.max(1))),
        height: Some(u32::from(height.max(1))),
        restore_cursor: false,
        use_kitty: kitty(),
        ..viuer::Config::default()
    };
    viuer::print(&picture, &config).map_err(|e| format!("cannot show it here: {e}"))?;
    let _ = crossterm::execute!(
        out,
        crossterm::cursor::MoveTo(0, height),
        crossterm::style::Print("any key goes back to the chat")
    );
    let _ = out.flush();
    Ok(())
}

/// Takes a picture off the screen: kitty keeps its images over text until told (other
/// terminals ignore the sequence).
pub fn clear() {
    let mut out = std::io::stdout();
    if kitty() {
        let _ = out.write_all(b"\x1b_Ga=d\x1b\\");
    }
    let _ = out.flush();
}
