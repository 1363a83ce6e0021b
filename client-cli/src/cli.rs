//! Command-line grammar of `hearth`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hearth: an end-to-end encrypted chat for your household.
///
/// Start with `hearth init --invite <INVITE> --name <HANDLE>` using the invite line the
/// relay owner gave you, compare fingerprints in person (`hearth fingerprint`), then
/// `hearth chat`. Try `hearth demo` to see everything work locally first.
#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = ENVIRONMENT_AND_EXIT_STATUS
)]
pub struct Cli {
    /// Options every command understands.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `hearth --help` and of the man page.
const ENVIRONMENT_AND_EXIT_STATUS: &str = "\
Environment:
  HEARTH_PROFILE            the profile directory (as --profile)
  HEARTH_PASSPHRASE         the profile's passphrase, when not asked on a terminal
  HEARTH_NEW_PASSPHRASE     the new passphrase for `hearth passphrase`
  HEARTH_BACKUP_PASSPHRASE  the passphrase of a backup file
  HEARTH_AGENT_TIMEOUT      how long the agent keeps the profile unlocked, e.g. 8h
  HEARTH_NO_AGENT=1         run every command in its own process (as --no-agent)
  HEARTH_NO_BELL            no terminal bell in the full-screen chat
  NO_COLOR                  no colours (the QR code is drawn in the terminal's own)
  RUST_LOG                  which log lines to show (as -v, more precisely)

Exit status:
  0    success
  1    failure (the message says what to do)
  2    wrong usage (unknown command, missing or malformed argument)
  129, 130, 143  ended by SIGHUP, SIGINT or SIGTERM

Files:
  <profile>/profile.redb   the encrypted store (mode 0600)
  <profile>/agent.sock     the agent's socket (mode 0600)
  <profile>/agent.log      the agent's log";

/// Options every command understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Profile directory (one identity per profile) [default: $HEARTH_PROFILE or the data dir]
    #[arg(long, global = true, value_name = "DIR", env = "HEARTH_PROFILE")]
    pub profile: Option<PathBuf>,

    /// Read the passphrase from this file instead of asking (first line is used)
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// Run in this process instead of through the profile's background agent [env: HEARTH_NO_AGENT=1]
    #[arg(long, global = true)]
    pub no_agent: bool,

    /// Show log lines on standard error (-v warnings, -vv more); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create your identity and register on a relay with an invite
    Init(InitArgs),
    /// Show your handle, relay and fingerprint
    Whoami,
    /// Show your fingerprint as digits and a QR code, to compare in person
    Fingerprint,
    /// Compare your safety number with someone in person, and record whether it matched
    Verify {
        /// Their handle
        nick: String,
        /// The numbers match (for scripts; on a terminal you are asked)
        #[arg(long, conflicts_with = "no")]
        yes: bool,
        /// The numbers do not match (for scripts; on a terminal you are asked)
        #[arg(long)]
        no: bool,
    },
    /// List the people whose keys you know, and whether you verified them
    Contacts,
    /// Accept someone's changed identity key, so you can send to them again
    ///
    /// Better: compare safety numbers in person with `hearth verify NICK`.
    Trust {
        /// Their handle
        nick: String,
    },
    /// Write an encrypted backup of this profile, to move it to a new machine
    ///
    /// The backup holds your identity, contacts and their verification, rooms and history,
    /// protected by a backup passphrase ($HEARTH_BACKUP_PASSPHRASE when not on a terminal).
    ExportBackup {
        /// The backup file to create
        file: PathBuf,
        /// Also put the files this profile downloaded for itself (`hearth open`) in the
        /// backup; files you saved elsewhere with `hearth save` are never in it
        #[arg(long)]
        files: bool,
    },
    /// Restore a backup into a new profile directory (--profile DIR)
    ///
    /// Your rooms catch up and renew their keys before anything is sent. The old
    /// machine's copy must not be used afterwards.
    ImportBackup {
        /// The backup file
        file: PathBuf,
    },
    /// Change the passphrase that protects this profile
    Passphrase,
    /// Move to a new identity key, e.g. after this device's key may have been copied
    ///
    /// The relay re-binds your account to the new key and refuses the old one from then
    /// on; every room you are in moves to the new key. The people in your rooms see a
    /// rotation signed by your old key, not a stranger; those who had verified you are
    /// asked to compare safety numbers again. Backups made before hold the old key and
    /// no longer sign in.
    RotateKey {
        /// Do not ask for confirmation (needed when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Create, list, join and manage rooms
    #[command(subcommand)]
    Room(RoomCommand),
    /// Send a message to a room, or privately to people (@NICK or "@NICK;NICK2")
    Send {
        /// Room name or id, or @NICK[;NICK2...] for a private message to each
        room: String,
        /// The message; `-` reads it from standard input (several lines are kept)
        text: String,
    },
    /// Send a file to a room, end-to-end encrypted (the relay keeps only ciphertext)
    ///
    /// The file is encrypted under a key of its own, uploaded in pieces (a lost
    /// connection resumes where it stopped), then announced with its key inside the
    /// room's encryption. Members see `[file ID] NAME (TYPE, SIZE)` and save it with
    /// `hearth save ID`. The relay deletes it with the room's messages.
    SendFile {
        /// Room name or id, or @NICK for your private conversation with NICK
        room: String,
        /// The file to send
        path: PathBuf,
        /// Text sent with the file
        #[arg(long)]
        caption: Option<String>,
    },
    /// Save a file someone sent: downloaded, decrypted and checked
    ///
    /// ID is the one shown in brackets with the file's message (`[file ID]`). The file is
    /// written under its own name (made safe; a number is added when the name is taken)
    /// only once it verified.
    Save {
        /// The file's id
        id: String,
        /// The directory to save into (default: the current directory)
        dir: Option<PathBuf>,
        /// The room the file was sent in, when the id alone names files in several rooms
        #[arg(long, value_name = "ROOM")]
        room: Option<String>,
    },
    /// Open a file someone sent with your desktop's program for it (saved first, checked)
    ///
    /// The file is saved into the profile's `files` directory (once: opening it again
    /// uses that copy) and handed to the desktop's opener (xdg-open, open, start), or to
    /// the program given with --with.
    Open {
        /// The file's id
        id: String,
        /// The program to open it with instead of the desktop's choice, e.g. `feh`
        #[arg(long, value_name = "PROGRAM")]
        with: Option<String>,
        /// The room the file was sent in, when the id alone names files in several rooms
        #[arg(long, value_name = "ROOM")]
        room: Option<String>,
    },
    /// Set the display name the people in your rooms see next to your handle
    ///
    /// The name (1 to 32 characters) is sent end-to-end encrypted to every room you are
    /// in; your handle stays shown too, since names can be imitated and handles cannot.
    Nick {
        /// The display name, e.g. "Uncle Bob"
        name: String,
    },
    /// Print the messages of a room you have not read yet
    ///
    /// The first time, and with --all, the last 50. Security notices found meanwhile (a
    /// changed key, an impostor...) are printed on standard error.
    Read {
        /// Room name or id, or @NICK for your private conversation with NICK
        room: String,
        /// Print the last 50 messages, read before or not
        #[arg(long, short)]
        all: bool,
        /// Only messages at or after this time ago, e.g. 10m, 2h, 1day
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Keep running and print messages as they arrive (Ctrl-C to stop)
        #[arg(long, short)]
        follow: bool,
    },
    /// Print the stored history of a room
    History {
        /// Room name or id
        room: String,
        /// How many messages, newest last
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// Chat interactively: a full-screen window on a terminal (rooms, messages, members;
    /// F1 lists the keys), IRC-style lines otherwise; type /help inside
    Chat {
        /// Room to start in (name or id); defaults to your first room
        room: Option<String>,
        /// Also tell me when someone new registers on the relay
        #[arg(long)]
        arrivals: bool,
        /// The plain line mode even on a terminal (always without one, e.g. in a pipe,
        /// with TERM=dumb, or with --no-agent)
        #[arg(long)]
        plain: bool,
    },
    /// Run a complete local demonstration: a relay and three people, in one process
    Demo,
    /// Print shell completions for bash, zsh, fish, elvish or powershell
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory
    Man {
        /// Write hearth.1 and a page for every subcommand (hearth-room-create.1 ...) here
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// The background agent that keeps this profile unlocked and connected
    ///
    /// The first command that needs the profile asks for the passphrase and starts the
    /// agent; later commands and chat windows go through it and need neither the
    /// passphrase nor a new connection. `hearth lock` stops it.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Stop the profile's agent: the key is forgotten until a command asks for the
    /// passphrase again
    Lock,
    /// The relay this profile uses
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Show this profile's settings, or change one: `hearth config notifications on`
    ///
    /// notifications: desktop notifications from the agent for a mention or a private
    /// message while no full-screen chat window has the focus (off by default).
    Config {
        /// The setting to show or change
        setting: Option<Setting>,
        /// Its new value
        value: Option<OnOff>,
    },
}

/// A setting of `hearth config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Setting {
    /// Desktop notifications for mentions and private messages
    Notifications,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// On
    On,
    /// Off
    Off,
}

/// `hearth relay …`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Follow your relay to a new address (it moved, got a domain name or a new port)
    ///
    /// HOST, HOST:PORT ([IPv6]:PORT), or the hearth:// address or invite the relay's owner
    /// gave out. The relay's key stays pinned, so only your relay is accepted at the new
    /// address; without :PORT the port stays as it was.
    SetAddress {
        /// HOST[:PORT], e.g. home.example.org:17443, or a hearth:// address
        #[arg(value_name = "HOST[:PORT]")]
        address: String,
        /// Do not try to reach the relay at the new address
        #[arg(long)]
        no_check: bool,
    },
}

/// `hearth agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground (commands start it in the background by themselves)
    Run {
        /// Forget the key and stop after this long, e.g. 8h [default: never]
        #[arg(long, value_parser = humantime::parse_duration, env = "HEARTH_AGENT_TIMEOUT")]
        timeout: Option<std::time::Duration>,
        /// Read the passphrase from standard input's first line and report "ready" on
        /// standard output: how commands start the agent
        #[arg(long, hide = true)]
        from_caller: bool,
    },
    /// Say whether the agent runs, for how long, and whether it is connected
    Status,
    /// Stop the agent (the same as `hearth lock`)
    Stop,
}

/// `hearth init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The invite line from the relay owner: hearth://HOST:PORT/invite/TOKEN#PIN
    #[arg(long)]
    pub invite: String,
    /// Your handle on the relay: letters, digits, '_' or '-', starting with a letter
    #[arg(long)]
    pub name: String,
}

/// `hearth room …`.
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room; you become its owner
    Create {
        /// The room's name (seen only by members; the relay never sees it)
        name: String,
    },
    /// List your rooms, pending invitations and public rooms
    List,
    /// Invite someone to a room (admins)
    Invite {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Accept a pending invitation, or join a public room
    Join {
        /// Room name or id of the invitation or public room
        room: String,
    },
    /// Leave a room
    Leave {
        /// Room name or id
        room: String,
    },
    /// Remove someone from a room (admins)
    Kick {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Remove someone and keep them out until unbanned (admins)
    Ban {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Take someone off the room's ban list (admins)
    Unban {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Make a member an admin (owner)
    Grant {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Take admin rights away (owner)
    Revoke {
        /// Room name or id
        room: String,
        /// Their handle
        nick: String,
    },
    /// Rename a room (admins; only members see the name)
    Rename {
        /// Room name or id
        room: String,
        /// The new name
        name: String,
    },
    /// Set the room's topic (admins)
    Topic {
        /// Room name or id
        room: String,
        /// The topic ("" clears it)
        topic: String,
    },
    /// Make messages disappear after a while, e.g. 7days, or "off" (admins)
    Expire {
        /// Room name or id
        room: String,
        /// A duration such as 12h or 7days, or off
        after: String,
    },
    /// List a room publicly on the relay so anyone registered can join (admins)
    Publish {
        /// Room name or id
        room: String,
        /// The name to list it under (visible to the relay and every account)
        public_name: String,
    },
    /// Take a room off the relay's public list (admins)
    Unpublish {
        /// Room name or id
        room: String,
    },
    /// Re-create a broken room as a new one with the same members and roles (admins)
    ///
    /// The members are invited to the new room; the old one gets a pointer to it.
    Rebuild {
        /// Room name or id
        room: String,
    },
    /// Show a room's owner, admins, ban list, topic and timer
    Info {
        /// Room name or id
        room: String,
    },
    /// List the members of a room
    Members {
        /// Room name or id
        room: String,
    },
    /// Show the room's code to compare with another member in person
    ///
    /// Every member at the same epoch sees the same code; a different one means you are
    /// shown different histories of the room. Also says whether a fork is waiting.
    Verify {
        /// Room name or id
        room: String,
    },
    /// Acknowledge that the room's history differs between members, to send again
    ///
    /// Compare the room's code (`hearth room verify`) with someone first.
    Ack {
        /// Room name or id
        room: String,
    },
}
