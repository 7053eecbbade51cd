//! Inspects and verifies sealed state files (docs/FORMAT.md).
//!
//! ```text
//! microkernel-state inspect FILE [--max-bytes N]                  # the envelope header; no key needed
//! microkernel-state verify FILE --key-env VAR [--max-bytes N]     # opens FILE with the key in $VAR
//! microkernel-state --help
//! ```
//!
//! `verify` reads the key as hex or base64 for the file's algorithm and uses the file's key id.
//! Only regular files are read (not links, FIFOs, devices or directories), and none larger than
//! `--max-bytes` (default 256 MiB). Every field read from the file is printed escaped, so a
//! hostile file cannot forge lines or terminal sequences. Exit code 0 on success (and for
//! `--help`), 1 on a bad file or key, 2 on bad usage.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use microkernel::seal::envelope::{Header, describe};
use microkernel::seal::{Key, Keyring, Sealer};
use microkernel::store::{DEFAULT_MAX_STATE_BYTES, StoreError, read_state_file};

const USAGE: &str = "\
usage: microkernel-state inspect FILE [--max-bytes N]
       microkernel-state verify FILE --key-env VAR [--max-bytes N]
       microkernel-state --help

inspect  prints a sealed state file's envelope header (no key needed)
verify   opens the file with the key in environment variable VAR (hex or base64)
--max-bytes N  refuse files larger than N bytes (default 268435456)";

/// What the command line asks for.
enum Command {
    Help,
    Inspect { file: PathBuf, limit: u64 },
    Verify { file: PathBuf, var: String, limit: u64 },
}

fn main() -> ExitCode {
    let command = match parse(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(problem) => {
            report(
                &mut std::io::stderr(),
                &format!("error: {}\n{USAGE}", printable(&problem)),
            );
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Help => Ok(USAGE.to_owned()),
        Command::Inspect { file, limit } => inspect(&file, limit),
        Command::Verify { file, var, limit } => verify(&file, &var, limit),
    };
    match outcome {
        // A report that cannot be written (stdout closed or full) is a failure, not a panic.
        Ok(text) if report(&mut std::io::stdout(), &text) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            report(&mut std::io::stderr(), &format!("error: {}", printable(&error)));
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline; whether it could.
fn report(out: &mut impl std::io::Write, text: &str) -> bool {
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// `text` with every control character escaped (`\n`, `\u{1b}`), so that names taken from a
/// file or the command line cannot forge lines or terminal sequences.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Parses the arguments (which need not be UTF-8: a file name may not be).
fn parse(args: Vec<OsString>) -> Result<Command, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    let mut args = args.into_iter();
    let verb = args.next().ok_or("no command given")?;
    let file = PathBuf::from(args.next().ok_or("no FILE given")?);
    let (mut var, mut limit) = (None, DEFAULT_MAX_STATE_BYTES);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
        let value = value
            .into_string()
            .map_err(|v| format!("the value {:?} is not valid UTF-8", v))?;
        match flag.to_str() {
            Some("--key-env") => var = Some(value),
            Some("--max-bytes") => {
                limit = value
                    .parse()
                    .map_err(|_| format!("--max-bytes takes a number of bytes, not `{}`", value.escape_debug()))?;
            }
            _ => return Err(format!("unknown option {:?}", flag.to_string_lossy())),
        }
    }
    match (verb.to_str(), var) {
        (Some("inspect"), None) => Ok(Command::Inspect { file, limit }),
        (Some("verify"), Some(var)) => Ok(Command::Verify { file, var, limit }),
        (Some("verify"), None) => Err("verify needs --key-env VAR".into()),
        (Some("inspect"), Some(_)) => Err("inspect takes no key".into()),
        _ => Err(format!("unknown command {:?}", verb.to_string_lossy())),
    }
}

fn read(file: &Path, limit: u64) -> Result<Vec<u8>, String> {
    read_state_file(file, limit).map_err(|e| match e {
        // The library's message names the store's option; here the limit is the flag's.
        StoreError::TooLarge { size, limit, .. } => format!(
            "`{}` is {size} bytes, over the limit of {limit} bytes (raise it with --max-bytes N)",
            file.display()
        ),
        other => other.to_string(),
    })
}

fn inspect(file: &Path, limit: u64) -> Result<String, String> {
    let blob = read(file, limit)?;
    let header = describe(&blob).map_err(|e| format!("`{}`: {e}", file.display()))?;
    Ok(format!(
        "file:               {}\n{header}",
        printable(&file.display().to_string())
    ))
}

fn verify(file: &Path, var: &str, limit: u64) -> Result<String, String> {
    let blob = read(file, limit)?;
    let (header, _) = Header::parse(&blob).map_err(|e| format!("`{}`: {e}", file.display()))?;
    let key = Key::from_env(header.algorithm, var).map_err(|e| e.to_string())?;
    let sealer = Sealer::new(Keyring::new(header.key_id.0, key));
    let service = header.service.escape_debug().to_string();
    let (state, generation) = sealer
        .open_generation(header.service, blob.clone())
        .map_err(|e| format!("`{}`: {}", file.display(), e.to_string().escape_debug()))?;
    Ok(format!(
        "ok: `{}` opens with the key in {}: service {service}, state v{}, generation {generation} ({} bytes)",
        printable(&file.display().to_string()),
        printable(var),
        state.tag().version,
        state.as_bytes().len()
    ))
}
