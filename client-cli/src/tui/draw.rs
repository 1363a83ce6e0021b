//! Draws an [`App`]: the top bar, the rooms pane, the room's messages, the members pane
//! and the input line. Pure: it reads the state and writes a ratatui frame.
//!
//! ```text
//!  hearth │ ● connected │ me@relay │ #room: topic
//!  Rooms        │ 12:30 <alice> …                 │ Members (3)
//!  #family      │                                 │ ● alice owner ✓
//! [#family] typed text_
//! ```
//!
//! Narrower than [`MEMBERS_FROM`] columns the members pane goes, narrower than
//! [`ROOMS_FROM`] the rooms pane too (unread counts and invitations then show in the top
//! bar).

use chrono::NaiveDate;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::app::{App, Focus, KEYS};
use super::rows::{self, Highlight, Zone};
use super::scrollback::Scrollback;

/// Width of the rooms pane, without its separator.
const ROOMS_WIDTH: u16 = 17;
/// Width of the members pane, without its separator.
const MEMBERS_WIDTH: u16 = 17;
/// The members pane shows on terminals at least this wide.
pub const MEMBERS_FROM: u16 = 76;
/// The rooms pane shows on terminals at least this wide.
pub const ROOMS_FROM: u16 = 50;

/// Where each part of the screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The top bar.
    pub top: Rect,
    /// The rooms pane, if wide enough.
    pub rooms: Option<Rect>,
    /// The room's messages.
    pub messages: Rect,
    /// The members pane, if wide enough.
    pub members: Option<Rect>,
    /// The input line.
    pub input: Rect,
}

/// Splits the screen.
pub fn layout(size: Rect) -> Areas {
    let (w, h) = (size.width, size.height);
    let input = Rect::new(size.x, size.y + h.saturating_sub(1), w, h.min(1));
    if h < 3 {
        let none = Rect::new(size.x, size.y, w, 0);
        return Areas {
            top: none,
            rooms: None,
            messages: none,
            members: None,
            input,
        };
    }
    let top = Rect::new(size.x, size.y, w, 1);
    let (y, mid) = (size.y + 1, h - 2);
    let mut x = size.x;
    let mut width = w;
    let rooms = (w >= ROOMS_FROM).then(|| {
        x += ROOMS_WIDTH + 1;
        width -= ROOMS_WIDTH + 1;
        Rect::new(size.x, y, ROOMS_WIDTH, mid)
    });
    let members = (w >= MEMBERS_FROM).then(|| {
        // A blank column between the messages and the separator.
        width -= MEMBERS_WIDTH + 2;
        Rect::new(size.x + w - MEMBERS_WIDTH, y, MEMBERS_WIDTH, mid)
    });
    Areas {
        top,
        rooms,
        messages: Rect::new(x, y, width, mid),
        members,
        input,
    }
}

/// The date to show in a separator before a line: its own, if it has a time and the
/// line with a time before it was on another day (or there is none).
pub fn separator_before(buffer: &Scrollback, index: u64, zone: Zone) -> Option<NaiveDate> {
    let date = zone.date(buffer.get(index)?)?;
    let before = (buffer.first()..index)
        .rev()
        .find_map(|i| buffer.get(i).and_then(|l| zone.date(l)));
    (before != Some(date)).then_some(date)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let areas = layout(frame.area());
    top_bar(frame, app, areas);
    if let Some(area) = areas.rooms {
        rooms_pane(frame, app, area);
        separator(frame, Rect::new(area.right(), area.y, 1, area.height));
    }
    messages(frame, app, areas.messages);
    if let Some(area) = areas.members {
        separator(frame, Rect::new(area.x - 1, area.y, 1, area.height));
        members_pane(frame, app, area);
    }
    input_line(frame, app, areas.input);
    if app.help {
        help(frame);
    }
}

fn separator(frame: &mut Frame, area: Rect) {
    let bar = Style::new().fg(Color::DarkGray);
    for y in area.top()..area.bottom() {
        frame.render_widget(Span::styled("│", bar), Rect::new(area.x, y, 1, 1));
    }
}

/// `s` cut to `width` columns, with `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_owned();
    }
    let mut out = String::new();
    for c in s.chars() {
        if out.width() + unicode_width::UnicodeWidthChar::width(c).unwrap_or(0) + 1 > width {
            break;
        }
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// How the current room is named: `#family`, `@alice`.
fn room_label(app: &App, id: &str) -> String {
    match app.view.rooms.iter().find(|r| r.id == id) {
        Some(room) if room.direct => room.label.clone(),
        Some(room) => format!("#{}", room.label),
        None => format!("room {}", &id[..id.len().min(8)]),
    }
}

fn top_bar(frame: &mut Frame, app: &App, areas: Areas) {
    let bar = Style::new().bg(Color::DarkGray).fg(Color::White);
    let sep = || Span::styled(" │ ", bar.fg(Color::Gray));
    let view = &app.view;
    let narrow = areas.rooms.is_none();
    let mut spans = vec![
        Span::styled(" hearth", bar.add_modifier(Modifier::BOLD)),
        sep(),
    ];
    // The connection state first: a long relay address must not push it off the bar.
    spans.push(if view.connected {
        Span::styled(
            if narrow { "●" } else { "● connected" },
            bar.fg(Color::LightGreen),
        )
    } else {
        Span::styled(
            "○ reconnecting…",
            bar.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    });
    if !view.me.is_empty() && !narrow {
        spans.push(sep());
        spans.push(Span::styled(format!("{}@{}", view.me, view.relay), bar));
    }
    if view.queued > 0 {
        spans.push(sep());
        spans.push(Span::styled(
            format!("{} queued", view.queued),
            bar.fg(Color::Yellow),
        ));
    }
    let mut room = Vec::new();
    if let Some(current) = &app.current {
        room.push(sep());
        room.push(Span::styled(
            room_label(app, current),
            bar.add_modifier(Modifier::BOLD),
        ));
        if let Some(topic) = view
            .topic
            .as_deref()
            .filter(|_| view.current == app.current)
        {
            room.push(Span::styled(format!(": {topic}"), bar));
        }
    }
    if narrow {
        // The room first, then what waits elsewhere; no topic.
        room.truncate(2);
        spans.append(&mut room);
        let (unread, mentions) = app
            .view
            .rooms
            .iter()
            .filter(|r| app.current.as_ref() != Some(&r.id))
            .filter_map(|r| app.room(&r.id))
            .fold((0, 0), |(u, m), b| (u + b.unread, m + b.mentions));
        if unread > 0 {
            spans.push(sep());
            let style = if mentions > 0 {
                bar.fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                bar
            };
            spans.push(Span::styled(format!("{unread} unread"), style));
        }
        if !view.invitations.is_empty() {
            spans.push(sep());
            spans.push(Span::styled(
                format!("{} invited (/accept)", view.invitations.len()),
                bar.fg(Color::Yellow),
            ));
        }
    }
    spans.append(&mut room);
    frame.render_widget(Line::from(spans).style(bar), areas.top);
}

fn rooms_pane(frame: &mut Frame, app: &App, area: Rect) {
    let width = usize::from(area.width);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let dim = Style::new().fg(Color::DarkGray);
    let selected = match app.focus {
        Focus::Rooms(i) => Some(i),
        Focus::Input | Focus::Select(_) => None,
    };
    let mut lines = vec![Line::styled("Rooms", bold)];
    for (i, room) in app.view.rooms.iter().enumerate() {
        let label = if room.direct {
            room.label.clone()
        } else {
            format!("#{}", room.label)
        };
        let (unread, mentions) = app
            .room(&room.id)
            .map_or((0, 0), |b| (b.unread, b.mentions));
        let count = match (unread, mentions) {
            (0, _) => String::new(),
            (n, 0) => format!(" {n}"),
            (n, _) => format!(" {n}!"),
        };
        let marker = if selected == Some(i) { "›" } else { " " };
        let label = fit(&label, width.saturating_sub(1 + count.width()));
        let pad = width.saturating_sub(1 + label.width() + count.width());
        let mut style = Style::new();
        if app.current.as_ref() == Some(&room.id) {
            style = style.add_modifier(Modifier::BOLD | Modifier::REVERSED);
        }
        if selected == Some(i) {
            style = style.fg(Color::Yellow);
        }
        let count_style = if mentions > 0 {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            bold
        };
        lines.push(Line::from(vec![
            Span::styled(marker, Style::new().fg(Color::Yellow)),
            Span::styled(format!("{label}{}", " ".repeat(pad)), style),
            Span::styled(count, count_style),
        ]));
    }
    if !app.view.invitations.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("Invitations", bold));
        let rooms = app.view.rooms.len();
        for (i, invitation) in app.view.invitations.iter().enumerate() {
            let chosen = selected == Some(rooms + i);
            let marker = if chosen { "›" } else { " " };
            let text = fit(
                &format!("{} ({})", invitation.name, invitation.from),
                width.saturating_sub(1),
            );
            let style = if chosen {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Yellow)
            };
            lines.push(Line::from(vec![
                Span::styled(marker, style),
                Span::styled(text, style),
            ]));
        }
        let on_invitation = selected.is_some_and(|i| i >= rooms);
        if on_invitation {
            lines.push(Line::styled(" a accept", dim));
            lines.push(Line::styled(" d decline", dim));
        } else if selected.is_none() {
            lines.push(Line::styled(" Tab to answer", dim));
        }
    }
    if selected.is_some() {
        lines.push(Line::styled(" Esc: back", dim));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn members_pane(frame: &mut Frame, app: &App, area: Rect) {
    let width = usize::from(area.width);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let dim = Style::new().fg(Color::DarkGray);
    // Members of another room while the agent catches up with a switch are not shown.
    let members: &[_] = if app.view.current == app.current {
        &app.view.members
    } else {
        &[]
    };
    let mut lines = vec![Line::styled(format!("Members ({})", members.len()), bold)];
    for m in members {
        let dot = if m.online {
            Span::styled("● ", Style::new().fg(Color::LightGreen))
        } else {
            Span::styled("○ ", dim)
        };
        let mut marks = Vec::new();
        if m.role != "member" && !m.role.is_empty() {
            marks.push(Span::styled(format!(" {}", m.role), dim));
        }
        if m.verified {
            marks.push(Span::styled(" ✓", Style::new().fg(Color::LightGreen)));
        }
        if m.changed {
            marks.push(Span::styled(
                " key changed!",
                Style::new()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        if m.me {
            marks.push(Span::styled(" (you)", dim));
        }
        let name_style = if m.changed {
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD)
        } else if m.me {
            bold
        } else {
            Style::new()
        };
        let marks_width: usize = marks.iter().map(Span::width).sum();
        if 2 + m.name.width() + marks_width <= width {
            let mut spans = vec![dot, Span::styled(m.name.clone(), name_style)];
            spans.extend(marks);
            lines.push(Line::from(spans));
        } else {
            lines.push(Line::from(vec![
                dot,
                Span::styled(fit(&m.name, width - 2), name_style),
            ]));
            if !marks.is_empty() {
                let mut spans = vec![Span::raw(" ")];
                spans.extend(marks);
                lines.push(Line::from(spans));
            }
        }
    }
    if lines.len() + 3 <= usize::from(area.height) {
        let blank = usize::from(area.height) - 2 - lines.len();
        lines.extend(std::iter::repeat_n(Line::raw(""), blank));
        let green = Style::new().fg(Color::LightGreen);
        lines.push(Line::from(vec![
            Span::styled("●", green),
            Span::styled(" online", dim),
        ]));
        lines.push(Line::from(vec![
            Span::styled("✓", green),
            Span::styled(" verified", dim),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn messages(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let height = usize::from(area.height);
    let Some(buffer) = app.screen() else {
        let hint = if app.view.rooms.is_empty() && app.view.invitations.is_empty() {
            "No rooms yet. /create NAME makes one; an invitation shows on the left."
        } else {
            "Nothing here yet. Type a message, or /help."
        };
        frame.render_widget(
            Paragraph::new(Line::styled(hint, Style::new().fg(Color::DarkGray)))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    };
    let query = app
        .search
        .as_ref()
        .map(|s| s.query.text())
        .filter(|q| !q.is_empty());
    let at = app.search.as_ref().and_then(|s| s.at);
    let selected = app.selected();
    let need = app.scroll + height;
    let mut rows: Vec<Line> = Vec::new();
    let end = buffer.first() + buffer.lines().len() as u64;
    for index in (buffer.first()..end).rev() {
        let Some(line) = buffer.get(index) else {
            continue;
        };
        let highlight = query
            .filter(|q| rows::matches(line, q))
            .map(|query| Highlight {
                query,
                current: at == Some(index),
            });
        let mut own = rows::line_rows(
            line,
            area.width,
            app.zone,
            highlight,
            selected == Some(index),
        );
        if let Some(date) = separator_before(buffer, index, app.zone) {
            own.insert(0, rows::day_separator(date, area.width));
        }
        rows.extend(own.into_iter().rev());
        if rows.len() >= need {
            break;
        }
    }
    rows.reverse();
    let scroll = app.scroll.min(rows.len().saturating_sub(height));
    let bottom = rows.len() - scroll;
    let shown = &rows[bottom.saturating_sub(height)..bottom];
    // New lines come in at the bottom, as in any chat.
    let top = area.y + (area.height - shown.len() as u16);
    for (i, row) in shown.iter().enumerate() {
        frame.render_widget(row, Rect::new(area.x, top + i as u16, area.width, 1));
    }
    if app.scroll > 0 {
        let text = match app.unseen {
            0 => " ▼ more below (PageDown, Esc) ".to_owned(),
            n => format!(" ▼ {n} new below (PageDown, Esc) "),
        };
        let style = Style::new().fg(Color::Black).bg(Color::Yellow);
        let bar = Line::styled(fit(&text, area.width.into()), style).centered();
        frame.render_widget(Clear, Rect::new(area.x, area.bottom() - 1, area.width, 1));
        frame.render_widget(bar, Rect::new(area.x, area.bottom() - 1, area.width, 1));
    }
}

/// The prompt before the input field and what follows it, as shown now.
fn input_parts(app: &App) -> (Span<'static>, Span<'static>) {
    if let Some(search) = &app.search {
        let matches = app.search_matches();
        let status = if search.query.is_empty() {
            "  type to search · Esc".to_owned()
        } else if matches.is_empty() {
            "  no match · Esc".to_owned()
        } else {
            let at = search
                .at
                .and_then(|a| matches.iter().position(|m| *m == a))
                .map_or(0, |p| p + 1);
            let end = if search.exhausted { " (no more)" } else { "" };
            format!("  {at}/{}{end} · n older · N newer · Esc", matches.len())
        };
        return (
            Span::styled(
                "search: ",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::styled(status, Style::new().fg(Color::DarkGray)),
        );
    }
    if let Focus::Select(index) = app.focus {
        let line = app.screen().and_then(|b| b.get(index));
        let seq = line.and_then(|l| l.seq).unwrap_or_default();
        let mut keys = vec!["↑↓"];
        match line {
            Some(line) if line.deleted => {}
            Some(line) if rows::is_own(line) => {
                keys.extend(["r reply", "e edit", "d delete", "+ react"])
            }
            Some(_) => keys.extend(["r reply", "+ react"]),
            None => {}
        }
        keys.push("Esc");
        return (
            Span::styled(
                format!("#{seq}: "),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("  {}", keys.join(" · ")),
                Style::new().fg(Color::DarkGray),
            ),
        );
    }
    let label = match &app.current {
        Some(id) => format!("[{}] ", fit(&room_label(app, id), 20)),
        None => "> ".to_owned(),
    };
    let style = match app.focus {
        Focus::Input => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        Focus::Rooms(_) | Focus::Select(_) => Style::new().fg(Color::DarkGray),
    };
    (Span::styled(label, style), Span::raw(""))
}

/// Columns the input field has.
pub fn input_width(app: &App) -> u16 {
    let (prompt, status) = input_parts(app);
    let width = usize::from(app.size.width).saturating_sub(prompt.width());
    // The search's status gives way to the query on a narrow screen.
    let width = if width >= status.width() + 10 {
        width - status.width()
    } else {
        width
    };
    u16::try_from(width).unwrap_or(u16::MAX).max(1)
}

fn input_line(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let (prompt, status) = input_parts(app);
    let (editor, width) = app.input_field();
    let (text, cursor) = editor.visible(app.input_offset, width);
    let prompt_width = prompt.width() as u16;
    let field = if app.focus == Focus::Input {
        Style::new()
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let pad = width.saturating_sub(text.width());
    let mut spans = vec![prompt, Span::styled(text, field)];
    if status.width() + width <= usize::from(area.width).saturating_sub(prompt_width.into()) {
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(status);
    }
    frame.render_widget(Line::from(spans), area);
    if app.focus == Focus::Input && !app.help {
        let x = area.x + prompt_width + cursor as u16;
        frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
    }
}

fn help(frame: &mut Frame) {
    let area = frame.area();
    let width = area.width.min(72);
    let height = area.height.min(KEYS.len() as u16 + 2);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let key_width = KEYS.iter().map(|(k, _)| k.width()).max().unwrap_or(0);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{keys:<key_width$}  "),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title(" Keys (any key closes) "),
        ),
        popup,
    );
}
