//! `bulletin dkim keygen`: a new DKIM signing key and the DNS record to publish.

use super::Ctx;
use anyhow::anyhow;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct DkimArgs {
    #[command(subcommand)]
    command: DkimCommand,
}

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Write a new private key (PEM, mode 0600) and print the DNS TXT record to publish.
    Keygen {
        /// The signing domain (d=): email.from's domain or a parent of it.
        #[arg(long)]
        domain: String,
        /// The selector (s=), e.g. bulletin2026.
        #[arg(long)]
        selector: String,
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The key type: rsa (2048 bits, verified everywhere) or ed25519.
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: DkimAlgorithm,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DkimAlgorithm {
    /// RSA, 2048 bits (every receiver verifies it).
    Rsa,
    /// Ed25519 (RFC 8463; not every receiver verifies it yet: RSA is the safe choice).
    Ed25519,
}

impl DkimArgs {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        let DkimCommand::Keygen {
            domain,
            selector,
            out,
            algorithm,
        } = self.command;
        keygen(&domain, &selector, &out, algorithm)
    }
}

/// `bulletin dkim keygen`: the key goes to a new file (created 0600, never over an
/// existing one), the record to standard output.
fn keygen(
    domain: &str,
    selector: &str,
    out: &Path,
    algorithm: DkimAlgorithm,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    crate::dkim::check_domain(domain).map_err(|m| anyhow!("--domain: {m}"))?;
    crate::dkim::check_selector(selector).map_err(|m| anyhow!("--selector: {m}"))?;
    let alg = match algorithm {
        DkimAlgorithm::Rsa => crate::dkim::Algorithm::Rsa,
        DkimAlgorithm::Ed25519 => crate::dkim::Algorithm::Ed25519,
    };
    let (key, pem) = crate::dkim::DkimKey::generate(alg).map_err(|m| anyhow!(m))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists: not overwritten (a key in use would stop verifying); choose another --out",
                out.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", out.display())
        }
    })?;
    if let Err(e) = file
        .write_all(pem.expose_secret().as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(anyhow!("cannot write {}: {e}", out.display()));
    }
    eprintln!(
        "wrote a new {} key to {}; publish this record, then set [email.dkim] domain = \"{domain}\", selector = \"{selector}\", private_key_file = \"{}\":",
        key.describe(),
        out.display(),
        out.display()
    );
    println!("{}", crate::dkim::dns_record(selector, domain, &key));
    Ok(())
}
