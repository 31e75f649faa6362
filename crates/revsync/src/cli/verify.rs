//! `revsync verify`: recompute the signatures of a captured body, for debugging a wrong key.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use twocheckout::form::FormBody;
use twocheckout::notification::Kind;
use twocheckout::signature::{self, Algorithm, SecretKey};

#[derive(Args)]
pub struct VerifyArgs {
    /// Notification kind: ipn, lcn or ins.
    #[arg(long)]
    kind: String,
    /// File holding the Secret Key (Secret Word for ins); a trailing newline is ignored.
    #[arg(long)]
    secret_file: PathBuf,
    /// The raw form-encoded body as 2Checkout posted it; `-` (default) reads stdin.
    #[arg(default_value = "-")]
    body: String,
}

const UNUSABLE: u8 = 2;

pub fn run(args: VerifyArgs) -> ExitCode {
    match check(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(UNUSABLE)
        }
    }
}

/// Prints every signature present and returns whether the strongest is valid.
fn check(args: &VerifyArgs) -> Result<bool, String> {
    let kind: Kind = args
        .kind
        .parse()
        .map_err(|_| format!("unknown kind `{}` (expected ipn, lcn or ins)", args.kind))?;
    let key = std::fs::read(&args.secret_file)
        .map_err(|e| format!("cannot read {}: {e}", args.secret_file.display()))?;
    let key = trim_newline(&key);
    if key.is_empty() {
        return Err(format!("{} is empty", args.secret_file.display()));
    }
    let key = SecretKey::new(key.to_vec());
    let mut body = Vec::new();
    if args.body == "-" {
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
    } else {
        body = std::fs::read(&args.body).map_err(|e| format!("cannot read {}: {e}", args.body))?;
    }
    // A captured body often ends with a newline the sender never sent.
    let body = trim_newline(&body);
    let form = FormBody::parse(body).map_err(|e| format!("malformed body: {e}"))?;

    if kind == Kind::Ins {
        let result = twocheckout::ins::verify_ins(&form, &key);
        let computed = match (
            form.get("sale_id"),
            form.get("vendor_id"),
            form.get("invoice_id"),
        ) {
            (Some(s), Some(v), Some(i)) => twocheckout::ins::ins_md5_hash(s, v, i, &key),
            _ => return Err("INS body lacks sale_id, vendor_id or invoice_id".into()),
        };
        println!(
            "md5_hash  received {}  computed {}  {}",
            form.get("md5_hash").unwrap_or("(absent)"),
            computed,
            if result.is_ok() { "MATCH" } else { "MISMATCH" }
        );
        return Ok(result.is_ok());
    }

    let checks = signature::check_all(&form, &key);
    if checks.is_empty() {
        println!("no signature present (HASH, SIGNATURE_SHA2_256, SIGNATURE_SHA3_256)");
        return Ok(false);
    }
    for c in &checks {
        println!(
            "{:<19} {:<8} received {}  computed {}  {}",
            c.algorithm.field_name(),
            c.algorithm.as_str(),
            c.received,
            c.computed,
            if c.valid { "MATCH" } else { "MISMATCH" }
        );
    }
    let strongest = checks
        .iter()
        .max_by_key(|c| c.algorithm)
        .expect("not empty");
    let verdict = signature::verify(&form, std::slice::from_ref(&key), Algorithm::Md5).is_ok();
    println!(
        "strongest present: {} — {}",
        strongest.algorithm.as_str(),
        if verdict { "valid" } else { "INVALID" }
    );
    Ok(verdict)
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && (bytes[end - 1] == b'\n' || bytes[end - 1] == b'\r') {
        end -= 1;
    }
    &bytes[..end]
}
