//! Inspects and verifies sealed state files (docs/FORMAT.md).
//!
//! ```text
//! microkernel-state inspect FILE                     # the envelope header; no key needed
//! microkernel-state verify FILE --key-env VAR        # opens FILE with the key in $VAR
//! ```
//!
//! `verify` reads the key as hex or base64 for the file's algorithm and uses the file's key id.
//! Exit code 0 on success, 1 on a bad file or key, 2 on bad usage.

use std::path::Path;
use std::process::ExitCode;

use microkernel::seal::envelope::{Header, TAG_LEN};
use microkernel::seal::{Key, Keyring, Sealer};

const USAGE: &str = "usage: microkernel-state inspect FILE\n       microkernel-state verify FILE --key-env VAR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["inspect", file] => inspect(Path::new(file)),
        ["verify", file, "--key-env", var] => verify(Path::new(file), var),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))
}

fn inspect(file: &Path) -> Result<String, String> {
    let blob = read(file)?;
    let (header, body) = Header::parse(&blob).map_err(|e| format!("`{}`: {e}", file.display()))?;
    let generation = match header.format {
        1 => "none (format version 1)".to_owned(),
        _ => header.generation.to_string(),
    };
    Ok(format!(
        "file:               {}\nformat version:     {}\nalgorithm:          {}\nkey id:             {}\nservice:            {}\nstate version:      {}\nschema fingerprint: {}\ngeneration:         {generation}\nheader bytes:       {}\nciphertext bytes:   {}\ntag bytes:          {TAG_LEN}\ntotal bytes:        {}",
        file.display(),
        header.format,
        header.algorithm,
        header.key_id,
        header.service,
        header.state.version,
        header.state.fingerprint,
        header.len(),
        body.len() - TAG_LEN,
        blob.len(),
    ))
}

fn verify(file: &Path, var: &str) -> Result<String, String> {
    let blob = read(file)?;
    let (header, _) = Header::parse(&blob).map_err(|e| format!("`{}`: {e}", file.display()))?;
    let key = Key::from_env(header.algorithm, var).map_err(|e| e.to_string())?;
    let sealer = Sealer::new(Keyring::new(header.key_id.0, key));
    let (state, generation) = sealer
        .open_generation(header.service, blob.clone())
        .map_err(|e| format!("`{}`: {e}", file.display()))?;
    Ok(format!(
        "ok: `{}` opens with the key in {var}: service {}, state v{}, generation {generation} ({} bytes)",
        file.display(),
        header.service,
        state.tag().version,
        state.as_bytes().len()
    ))
}
