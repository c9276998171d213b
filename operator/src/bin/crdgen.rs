//! Writes the CustomResourceDefinitions to `crds/` (or prints them with `--stdout`).
//!
//! Usage: `cargo run -p netstream-operator --bin crdgen [-- <dir>]`. The default directory is
//! the repository's `crds/`; a test fails when the checked-in files drift from the types.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Writes netstream's CustomResourceDefinitions (NetProbe, StreamAnalysis) as YAML.
#[derive(Parser, Debug)]
#[command(name = "crdgen", version)]
struct Args {
    /// Print the CRDs to standard output instead of writing files.
    #[arg(long, conflicts_with = "dir")]
    stdout: bool,
    /// Directory to write the CRD files into (default: the repository's `crds/`).
    dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.stdout {
        for (_, yaml) in netstream_operator::crdgen::render()? {
            print!("{yaml}");
        }
        return Ok(());
    }
    let dir = args
        .dir
        .unwrap_or_else(netstream_operator::crdgen::default_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, yaml) in netstream_operator::crdgen::render()? {
        let path = dir.join(file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
