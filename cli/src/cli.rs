//! The command line, defined once: parsing, `--help`, the man pages and the
//! shell completions all come from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Text shown after `--help` and in the man page's EXIT STATUS section.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  error (unreadable or invalid config or user file, I/O, lock timeout)
  2  usage error (unknown option, missing or bad argument)
  3  code or password refused (wrong, already used, or none given)
  4  not enrolled
  5  not permitted (--user for another user, --force, unlock and reset need root)
  6  locked out after too many wrong codes
  7  already enrolled (enroll or import over an existing enrollment without a current code)
  8  `otpgate check` found errors or warnings (listed on stdout)
  9  nothing to remove (`trusted remove` of a host that is not trusted,
     `disable METHOD` of a method the user does not have)

Every failure prints one line on stderr: `otpgate: <reason>`.

Codes are read from the terminal with echo off, or one line per code from
standard input when it is not a terminal (scripts, tests).";

/// Two-factor authentication for Linux logins: enroll an authenticator app,
/// manage backup codes and trusted hosts.
#[derive(Debug, Parser)]
#[command(
    name = "otpgate",
    version,
    about,
    long_about = "otpgate adds a second factor (TOTP or HOTP codes from an authenticator \
app, or one-time backup codes) to Linux logins through the PAM module pam_otpgate.so. \
This command enrolls a user and manages their enrollment.",
    after_long_help = EXIT_STATUS_HELP,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// System config file (like the module's config=PATH). Without it,
    /// /etc/otpgate/config.toml is read when it exists. Account commands
    /// use only a file owned by root (a user's own could turn checks off).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Act on this user instead of yourself (root only for other users).
    #[arg(long, short = 'u', global = true, value_name = "NAME")]
    pub user: Option<String>,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a secret, show it as a QR code, confirm one code, save it and
    /// hand out backup codes.
    Enroll(EnrollArgs),
    /// Show whether the user is enrolled, how, backup codes left, trusted
    /// hosts and lockout.
    Status,
    /// Check a code without logging in (a used TOTP step stays used; backup
    /// codes are kept unless --consume).
    Verify(VerifyArgs),
    /// Replace the backup codes with new ones (asks for a current code).
    #[command(name = "backup-codes")]
    BackupCodes(BackupCodesArgs),
    /// List or forget hosts the user chose to trust at login.
    #[command(subcommand)]
    Trusted(TrustedCommand),
    /// Remove the enrollment, or one method of it (asks for a current code).
    Disable(DisableArgs),
    /// List, add, remove or rename the user's authenticators (devices):
    /// a login accepts a code from any of them.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Lift a lockout after too many wrong codes (root).
    Unlock,
    /// List the enrolled users: methods, backup codes left, lockout (root).
    /// With store.kind = "daemon", every user otpgated holds, on any host
    /// of a fleet sharing its database.
    Users,
    /// Remove a user's enrollment without a code, e.g. a lost phone (root).
    Reset,
    /// Import an enrollment from another tool, keeping the user's app.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Move records between stores (root).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Check the system config, the pam.d files that load pam_otpgate.so and
    /// sshd_config; say what happens at login and what is wrong.
    Check(CheckArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into DIR.
    #[command(hide = true)]
    Man {
        /// Write otpgate.1 and otpgate-<command>.1 here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    #[value(name = "SHA1", alias = "sha1")]
    Sha1,
    #[value(name = "SHA256", alias = "sha256")]
    Sha256,
    #[value(name = "SHA512", alias = "sha512")]
    Sha512,
}

impl From<AlgorithmArg> for otpgate_config::otp::Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        use otpgate_config::otp::Algorithm;
        match a {
            AlgorithmArg::Sha1 => Algorithm::SHA1,
            AlgorithmArg::Sha256 => Algorithm::SHA256,
            AlgorithmArg::Sha512 => Algorithm::SHA512,
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnrollArgs {
    /// Enroll an email address or phone number for sent codes instead of
    /// an authenticator app.
    #[command(subcommand)]
    pub channel: Option<EnrollChannel>,

    #[command(flatten)]
    pub app: AppArgs,

    /// Replace an existing enrollment without a current code (root only).
    #[arg(long)]
    pub force: bool,

    /// Also write the backup codes to FILE for printing (mode 0600, must
    /// not exist yet).
    #[arg(long, value_name = "FILE")]
    pub backup_codes_file: Option<PathBuf>,
}

/// How a new authenticator is made and shown: `enroll` and `devices add`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// HMAC algorithm. Most apps only support SHA1.
    #[arg(long, value_enum, default_value = "SHA1", ignore_case = true)]
    pub algorithm: AlgorithmArg,

    /// Digits per code (6 to 8).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(6..=8))]
    pub digits: u8,

    /// Seconds per TOTP code (1 to 3600).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600),
          conflicts_with = "hotp")]
    pub period: u64,

    /// Counter-based codes (HOTP, RFC 4226) instead of time-based ones.
    #[arg(long)]
    pub hotp: bool,

    /// Issuer shown in the app [default: the config's issuer, else the host name].
    #[arg(long)]
    pub issuer: Option<String>,

    /// Account name shown in the app [default: USER@HOST].
    #[arg(long)]
    pub label: Option<String>,

    /// Use this base32 secret instead of a new random one (`-` reads it
    /// from stdin). A command line is visible to other local users.
    #[arg(long, value_name = "BASE32")]
    pub secret: Option<String>,

    /// Save without asking for a code from the app (provisioning).
    #[arg(long)]
    pub no_confirm: bool,

    /// Draw the QR code dark-on-light (for terminals with a light
    /// background) instead of the default light-on-dark.
    #[arg(long)]
    pub invert: bool,

    /// Do not draw the QR code in the terminal.
    #[arg(long)]
    pub no_qr: bool,

    /// Also write the QR code as an SVG picture (mode 0600, new file).
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,

    /// Also write the QR code as a PNG picture (mode 0600, new file).
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EnrollChannel {
    /// Codes by email ([channels.email]): a code is sent to ADDRESS and the
    /// address is saved once that code is typed back.
    Email(ChannelArgs),
    /// Codes by SMS ([channels.sms]): a code is sent to NUMBER
    /// (international form, +CC...) and the number is saved once that code
    /// is typed back.
    Sms(ChannelArgs),
}

#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// The email address or phone number.
    #[arg(value_name = "DESTINATION")]
    pub destination: String,

    /// Save without sending a code (root only, for provisioning).
    #[arg(long)]
    pub no_confirm: bool,

    /// Replace the enrollment's destination without a current code (root only).
    #[arg(long)]
    pub force: bool,
}

/// What `disable` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// The authenticator app (TOTP/HOTP secret).
    App,
    /// The email address for sent codes.
    Email,
    /// The phone number for sent codes.
    Sms,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Remove only this method [default: the whole enrollment]. Removing
    /// the last method removes the enrollment.
    #[arg(value_enum)]
    pub method: Option<MethodArg>,

    /// Skip the current-code check (root only).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The directory of PAM service files.
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
    pub pam_dir: PathBuf,

    /// sshd's config file (its Include lines are followed).
    #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
    pub sshd_config: PathBuf,

    /// Instead, print the effective policy of a login of --user (default:
    /// yourself) through this PAM service, after [[policy.override]], and
    /// which entry decided each setting.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Use up a backup code that matches (by default it is only checked).
    #[arg(long)]
    pub consume: bool,
}

#[derive(Debug, Args)]
pub struct BackupCodesArgs {
    /// Skip the current-code check (root only).
    #[arg(long)]
    pub force: bool,

    /// Also write the new codes to FILE (mode 0600, must not exist yet).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ForceArgs {
    /// Skip the current-code check (root only).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum TrustedCommand {
    /// List trusted hosts: the address, the service it skips the code for,
    /// since and until when.
    List,
    /// Stop trusting HOST.
    Remove {
        /// The host as listed.
        host: String,
    },
    /// Stop trusting every host.
    Clear,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List the devices: name, kind (totp or hotp), algorithm, digits,
    /// period or next counter. `--json` prints {"devices": [...]}.
    List,
    /// Add a device: a new secret shown as a QR code as `enroll` does,
    /// confirmed with one code from the new device. Asks first for a
    /// current code of an existing device or a backup code (not root
    /// acting on another user with --user, nor with --force).
    Add(DeviceAddArgs),
    /// Remove a device; its codes stop working at once. Removing the last
    /// one removes the app, as `disable app` does. Asks for a current code
    /// as `add` does.
    Remove(DeviceRemoveArgs),
    /// Rename a device.
    Rename {
        /// The device's name now.
        from: String,
        /// Its new name: 1 to 32 of A-Z a-z 0-9 . _ -
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct DeviceAddArgs {
    /// The new device's name: 1 to 32 of A-Z a-z 0-9 . _ - (unique).
    pub name: String,

    #[command(flatten)]
    pub app: AppArgs,

    /// Skip the current-code check (root only).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DeviceRemoveArgs {
    /// The device to remove.
    pub name: String,

    /// Skip the current-code check (root only).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy users' files (user_file: homes or central storage) into
    /// otpgated at store.socket, state and backup codes included. Run it
    /// before and again after switching to store.kind = "daemon": a record
    /// imported already keeps every code either copy used. Records of
    /// another enrollment are refused, never overwritten.
    Import(StoreImportArgs),
}

#[derive(Debug, Args)]
pub struct StoreImportArgs {
    /// Users to import.
    #[arg(value_name = "USER", required_unless_present = "all")]
    pub users: Vec<String>,
    /// Every user with a file: those root's enrolled record names, the
    /// accounts in /etc/passwd, and the files of a central user_file
    /// directory.
    #[arg(long, conflicts_with = "users")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a google-authenticator file [default: ~USER/.google_authenticator].
    #[command(name = "google-authenticator")]
    GoogleAuthenticator(ImportArgs),
    /// Import the user's line of a pam_oath usersfile (e.g. /etc/users.oath):
    /// `HOTP/T30/6 USER - HEXSECRET [COUNTER [LASTOTP [TIME]]]`.
    Oath(OathArgs),
}

#[derive(Debug, Args)]
pub struct OathArgs {
    /// The usersfile; the line of the user (--user, or you) is imported.
    /// It must be root's or the user's, not a symlink, and not writable by
    /// group or others.
    pub file: PathBuf,

    /// The name of the imported device.
    #[arg(long, value_name = "NAME", default_value = "app")]
    pub device: String,

    /// Replace an existing enrollment without a current code (root only).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import: the user's (or root's), not a symlink, and
    /// private to its owner, as pam_google_authenticator demands.
    pub file: Option<PathBuf>,

    /// The name of the imported device.
    #[arg(long, value_name = "NAME", default_value = "app")]
    pub device: String,

    /// Replace an existing enrollment without a current code (root only).
    #[arg(long)]
    pub force: bool,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        command().debug_assert();
    }
}
