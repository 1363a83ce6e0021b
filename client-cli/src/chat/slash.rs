//! Parsing what the user types in chat: a message, or a slash command.

/// One line of chat input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing to do (an empty line).
    Empty,
    /// Text for the current room.
    Message(String),
    /// A slash command.
    Command(Command),
}

/// The slash commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help [COMMAND]`
    Help(Option<String>),
    /// `/list`
    List,
    /// `/join ROOM`
    Join(String),
    /// `/leave`
    Leave,
    /// `/current [ROOM]`
    Current(Option<String>),
    /// `/who`
    Who,
    /// `/msg NICK[;NICK2...] TEXT`
    Msg {
        /// Recipients.
        nicks: Vec<String>,
        /// The message.
        text: String,
    },
    /// `/nick NAME`
    Nick(String),
    /// `/bye`
    Bye,
    /// `/invite NICK`
    Invite(String),
    /// `/kick NICK`
    Kick(String),
    /// `/ban NICK`
    Ban(String),
    /// `/unban NICK`
    Unban(String),
    /// `/grant NICK`
    Grant(String),
    /// `/revoke NICK`
    Revoke(String),
    /// `/ren NAME`
    Rename(String),
    /// `/expire DURATION|off`
    Expire(String),
    /// `/rebuild`
    Rebuild,
    /// `/create NAME`
    Create(String),
    /// `/topic [TEXT]` (no text clears it)
    Topic(String),
    /// `/publish NAME`
    Publish(String),
    /// `/info`
    Info,
    /// `/verify NICK`
    Verify(String),
    /// `/accept ROOM`
    Accept(String),
    /// `/decline ROOM`
    Decline(String),
    /// `/reply N TEXT`
    Reply {
        /// The message answered (its number).
        to: u64,
        /// The reply.
        text: String,
    },
    /// `/edit N TEXT`
    Edit {
        /// Our message to change.
        target: u64,
        /// Its new text.
        text: String,
    },
    /// `/delete N`
    Delete(u64),
    /// `/react N EMOJI`
    React {
        /// The message reacted to.
        target: u64,
        /// The reaction.
        emoji: String,
    },
    /// `/search TEXT`
    Search(String),
    /// `/file PATH`
    File(String),
    /// `/save ID [DIR]`
    Save {
        /// The file's id.
        id: String,
        /// Where to save it.
        dir: Option<String>,
    },
    /// `/open ID`
    Open(String),
    /// `/preview ID`
    Preview(String),
}

/// Name, usage and one line of help for every command, in the order `/help` lists them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "help",
        "/help [COMMAND]",
        "list the commands, or explain one",
    ),
    ("list", "/list", "your rooms and pending invitations"),
    (
        "join",
        "/join ROOM",
        "accept an invitation to ROOM, or switch to it",
    ),
    ("leave", "/leave", "leave the current room"),
    (
        "current",
        "/current [ROOM]",
        "show the current room, or switch to ROOM",
    ),
    (
        "who",
        "/who",
        "members of the current room and their fingerprints",
    ),
    (
        "msg",
        "/msg NICK[;NICK2...] TEXT",
        "a private message to one or more people",
    ),
    ("nick", "/nick NAME", "set the name others see"),
    ("bye", "/bye", "quit (also Ctrl-D)"),
    (
        "invite",
        "/invite NICK",
        "invite someone to the current room",
    ),
    (
        "kick",
        "/kick NICK",
        "remove someone from the current room (admins)",
    ),
    (
        "ban",
        "/ban NICK",
        "remove someone and keep them out (admins)",
    ),
    (
        "unban",
        "/unban NICK",
        "allow a banned person back (admins)",
    ),
    ("grant", "/grant NICK", "make someone an admin (owner)"),
    ("revoke", "/revoke NICK", "take admin rights away (owner)"),
    ("ren", "/ren NAME", "rename the current room (admins)"),
    (
        "expire",
        "/expire DURATION|off",
        "make messages disappear after DURATION, e.g. 1d (admins)",
    ),
    (
        "rebuild",
        "/rebuild",
        "re-create a broken room with the same members (admins)",
    ),
    ("create", "/create NAME", "create a room and switch to it"),
    (
        "topic",
        "/topic [TEXT]",
        "set the current room's topic; without TEXT, clear it (admins)",
    ),
    (
        "publish",
        "/publish NAME",
        "list the current room publicly on the relay as NAME (admins)",
    ),
    (
        "info",
        "/info",
        "the current room's owner, admins, bans, topic and timer",
    ),
    (
        "verify",
        "/verify NICK",
        "show the safety number to compare with NICK in person",
    ),
    ("accept", "/accept ROOM", "accept an invitation"),
    ("decline", "/decline ROOM", "decline an invitation"),
    (
        "reply",
        "/reply N TEXT",
        "answer message #N (the number beside it; full screen: select it, r)",
    ),
    (
        "edit",
        "/edit N TEXT",
        "change the text of your message #N (full screen: select it, e)",
    ),
    (
        "delete",
        "/delete N",
        "withdraw your message #N for everyone (full screen: select it, d)",
    ),
    (
        "react",
        "/react N EMOJI",
        "react to message #N, e.g. /react 14 👍 (full screen: select it, +)",
    ),
    (
        "search",
        "/search TEXT",
        "the room's messages that contain TEXT (full screen: highlights them; also Ctrl-F)",
    ),
    (
        "file",
        "/file PATH",
        "send a file to the current room, end-to-end encrypted",
    ),
    (
        "save",
        "/save ID [DIR]",
        "save the file [file ID] into DIR (default: your Downloads folder)",
    ),
    (
        "open",
        "/open ID",
        "open the file [file ID] with your desktop's program for it",
    ),
    (
        "preview",
        "/preview ID",
        "show the picture [file ID] here (full screen, on terminals that can), else its type and size",
    ),
];

/// The usage line of a command, for error messages.
pub fn usage(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, usage, _)| *usage)
        .unwrap_or("/help")
}

/// Parses one line. An error is a message for the user (wrong use of a command).
pub fn parse(line: &str) -> Result<Input, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Input::Empty);
    }
    // `//text` sends a message that starts with a slash.
    if let Some(rest) = line.strip_prefix("//") {
        return Ok(Input::Message(format!("/{rest}")));
    }
    let Some(body) = line.strip_prefix('/') else {
        return Ok(Input::Message(line.to_string()));
    };
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (body, ""),
    };
    let name = name.to_ascii_lowercase();
    let one = |name: &str| -> Result<String, String> {
        match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
            [word] => Ok((*word).to_string()),
            _ => Err(format!("usage: {}", usage(name))),
        }
    };
    let none = |name: &str, command: Command| -> Result<Input, String> {
        if rest.is_empty() {
            Ok(Input::Command(command))
        } else {
            Err(format!("usage: {}", usage(name)))
        }
    };
    let text = |name: &str| -> Result<String, String> {
        if rest.is_empty() {
            Err(format!("usage: {}", usage(name)))
        } else {
            Ok(rest.to_string())
        }
    };
    let command = match name.as_str() {
        "help" | "h" | "?" => Command::Help(if rest.is_empty() { None } else { Some(rest.trim_start_matches('/').to_string()) }),
        "list" => return none("list", Command::List),
        "join" | "j" => Command::Join(text("join")?),
        "leave" | "part" => return none("leave", Command::Leave),
        "current" => Command::Current(if rest.is_empty() { None } else { Some(rest.to_string()) }),
        "who" => return none("who", Command::Who),
        "msg" | "m" => {
            let (targets, message) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("usage: {}", usage("msg")))?;
            let nicks: Vec<String> = targets
                .split(';')
                .map(|n| n.trim().trim_start_matches('@').to_string())
                .filter(|n| !n.is_empty())
                .collect();
            let message = message.trim();
            if nicks.is_empty() || message.is_empty() {
                return Err(format!("usage: {}", usage("msg")));
            }
            Command::Msg {
                nicks,
                text: message.to_string(),
            }
        }
        "nick" => Command::Nick(text("nick")?),
        "bye" | "quit" | "exit" => return none("bye", Command::Bye),
        "invite" => Command::Invite(one("invite")?),
        "kick" => Command::Kick(one("kick")?),
        "ban" => Command::Ban(one("ban")?),
        "unban" => Command::Unban(one("unban")?),
        "grant" => Command::Grant(one("grant")?),
        "revoke" => Command::Revoke(one("revoke")?),
        "ren" | "rename" => Command::Rename(text("ren")?),
        "expire" => Command::Expire(one("expire")?),
        "rebuild" => return none("rebuild", Command::Rebuild),
        "create" => Command::Create(text("create")?),
        "topic" => Command::Topic(rest.to_string()),
        "publish" => Command::Publish(text("publish")?),
        "info" => return none("info", Command::Info),
        "verify" => Command::Verify(one("verify")?),
        "accept" => Command::Accept(text("accept")?),
        "decline" => Command::Decline(text("decline")?),
        "reply" | "re" => {
            let (to, text) = numbered("reply", rest)?;
            Command::Reply { to, text }
        }
        "edit" => {
            let (target, text) = numbered("edit", rest)?;
            Command::Edit { target, text }
        }
        "delete" | "del" => match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
            [n] => Command::Delete(number("delete", n)?),
            _ => return Err(format!("usage: {}", usage("delete"))),
        },
        "react" => match numbered("react", rest)? {
            (target, emoji) if !emoji.contains(char::is_whitespace) => {
                Command::React { target, emoji }
            }
            _ => return Err(format!("usage: {} (one reaction)", usage("react"))),
        },
        "search" | "find" => Command::Search(text("search")?),
        "file" | "upload" => Command::File(text("file")?),
        "save" => match rest.split_once(char::is_whitespace) {
            Some((id, dir)) => Command::Save {
                id: id.to_string(),
                dir: Some(dir.trim().to_string()),
            },
            None if !rest.is_empty() => Command::Save {
                id: rest.to_string(),
                dir: None,
            },
            None => return Err(format!("usage: {}", usage("save"))),
        },
        "open" => Command::Open(text("open")?),
        "preview" | "view" => Command::Preview(text("preview")?),
        other => {
            return Err(format!(
                "unknown command /{other}: type /help for the list (start with // to send a message beginning with /)"
            ))
        }
    };
    Ok(Input::Command(command))
}

/// A message number as typed: `14` or `#14`.
fn number(name: &str, word: &str) -> Result<u64, String> {
    word.trim_start_matches('#').parse().map_err(|_| {
        format!(
            "usage: {}: N is the number shown beside the message, e.g. #14",
            usage(name)
        )
    })
}

/// `N TEXT` of `/reply`, `/edit` and `/react`: a number, then some text.
fn numbered(name: &str, rest: &str) -> Result<(u64, String), String> {
    let (n, text) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("usage: {}", usage(name)))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("usage: {}", usage(name)));
    }
    Ok((number(name, n)?, text.to_string()))
}

/// The text `/help` prints.
pub fn help(topic: Option<&str>) -> String {
    match topic {
        Some(name) => match COMMANDS.iter().find(|(n, _, _)| *n == name) {
            Some((_, usage, help)) => format!("{usage}  {help}"),
            None => format!("no command /{name}: type /help for the list"),
        },
        None => {
            let mut out =
                String::from("Commands (anything else is a message to the current room):\n");
            for (_, usage, help) in COMMANDS {
                out.push_str(&format!("  {usage:<28} {help}\n"));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_message() {
        assert_eq!(
            parse("hello there"),
            Ok(Input::Message("hello there".into()))
        );
        assert_eq!(parse("   "), Ok(Input::Empty));
        assert_eq!(
            parse("//etc/hosts"),
            Ok(Input::Message("/etc/hosts".into()))
        );
    }

    #[test]
    fn commands_with_arguments() {
        assert_eq!(
            parse("/join family"),
            Ok(Input::Command(Command::Join("family".into())))
        );
        assert_eq!(
            parse("/KICK bob"),
            Ok(Input::Command(Command::Kick("bob".into())))
        );
        assert_eq!(
            parse("/ren Sunday lunch"),
            Ok(Input::Command(Command::Rename("Sunday lunch".into())))
        );
        assert_eq!(
            parse("/msg alice;@bob see you at 6"),
            Ok(Input::Command(Command::Msg {
                nicks: vec!["alice".into(), "bob".into()],
                text: "see you at 6".into()
            }))
        );
        assert_eq!(
            parse("/nick  Uncle Bob "),
            Ok(Input::Command(Command::Nick("Uncle Bob".into())))
        );
        assert_eq!(parse("/nick"), Err("usage: /nick NAME".into()));
        assert_eq!(
            parse("/current"),
            Ok(Input::Command(Command::Current(None)))
        );
        assert_eq!(
            parse("/help kick"),
            Ok(Input::Command(Command::Help(Some("kick".into()))))
        );
    }

    #[test]
    fn wrong_use_gets_the_usage_line() {
        assert_eq!(parse("/kick"), Err("usage: /kick NICK".into()));
        assert_eq!(parse("/kick a b"), Err("usage: /kick NICK".into()));
        assert_eq!(
            parse("/msg bob"),
            Err("usage: /msg NICK[;NICK2...] TEXT".into())
        );
        assert_eq!(parse("/who everyone"), Err("usage: /who".into()));
        assert!(parse("/frobnicate")
            .unwrap_err()
            .starts_with("unknown command /frobnicate"));
    }

    #[test]
    fn help_lists_every_command() {
        let text = help(None);
        for (name, _, _) in COMMANDS {
            assert!(
                text.contains(&format!("/{name}")),
                "{name} missing from /help"
            );
        }
        assert!(help(Some("ban")).starts_with("/ban NICK"));
        assert!(help(Some("rebuild")).starts_with("/rebuild"));
        assert_eq!(parse("/rebuild"), Ok(Input::Command(Command::Rebuild)));
        assert_eq!(parse("/rebuild now"), Err("usage: /rebuild".into()));
    }

    #[test]
    fn commands_about_a_message_take_its_number() {
        assert_eq!(
            parse("/reply 14 me too"),
            Ok(Input::Command(Command::Reply {
                to: 14,
                text: "me too".into()
            }))
        );
        assert_eq!(
            parse("/edit #14  the cake, not the pie "),
            Ok(Input::Command(Command::Edit {
                target: 14,
                text: "the cake, not the pie".into()
            }))
        );
        assert_eq!(parse("/delete #7"), Ok(Input::Command(Command::Delete(7))));
        assert_eq!(
            parse("/react 7 👍"),
            Ok(Input::Command(Command::React {
                target: 7,
                emoji: "👍".into()
            }))
        );
        assert_eq!(
            parse("/search Apple cake"),
            Ok(Input::Command(Command::Search("Apple cake".into())))
        );
        assert_eq!(parse("/reply 14"), Err("usage: /reply N TEXT".into()));
        assert!(parse("/reply alice hi")
            .unwrap_err()
            .contains("number shown"));
        assert_eq!(parse("/delete"), Err("usage: /delete N".into()));
        assert!(parse("/react 7 👍 👎")
            .unwrap_err()
            .contains("one reaction"));
        assert_eq!(parse("/search"), Err("usage: /search TEXT".into()));
    }

    #[test]
    fn room_commands_of_the_full_screen_chat() {
        assert_eq!(
            parse("/create Sunday lunch"),
            Ok(Input::Command(Command::Create("Sunday lunch".into())))
        );
        assert_eq!(parse("/create"), Err("usage: /create NAME".into()));
        assert_eq!(
            parse("/topic"),
            Ok(Input::Command(Command::Topic(String::new())))
        );
        assert_eq!(
            parse("/topic dinner at 7"),
            Ok(Input::Command(Command::Topic("dinner at 7".into())))
        );
        assert_eq!(parse("/info"), Ok(Input::Command(Command::Info)));
        assert_eq!(
            parse("/verify bob"),
            Ok(Input::Command(Command::Verify("bob".into())))
        );
        assert_eq!(parse("/verify"), Err("usage: /verify NICK".into()));
        assert_eq!(
            parse("/accept 6af17e38"),
            Ok(Input::Command(Command::Accept("6af17e38".into())))
        );
        assert_eq!(
            parse("/decline kitchen"),
            Ok(Input::Command(Command::Decline("kitchen".into())))
        );
    }
}
