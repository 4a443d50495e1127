//! Real data, the default command: writes scikit-learn's 8×8 digits (committed in
//! `tests/fixtures/digits/`) as a 32×32 image folder and trains on it exactly as
//! `vheat train --data DIR` does with no other flag (the automatic from-scratch recipe).
//!
//! ```text
//! cargo run --release --example digits                    # folder in artifacts/digits/data
//! cargo run --release --example digits -- --write-only    # only write the folder (for scripts/train_digits_torch.py)
//! cargo run --release --example digits -- -- --epochs 5   # anything after `--` goes to `vheat train`
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vheat::cli::train::{run, TrainArgs};
use vheat::data::Digits;

/// Trains the default from-scratch recipe on the real handwritten digits.
#[derive(Debug, Parser)]
struct Args {
    /// Where the 32×32 image folder (train/ and val/) is written.
    #[arg(long, value_name = "DIR", default_value = "artifacts/digits/data")]
    data: PathBuf,
    /// Side of the written images.
    #[arg(long, value_name = "S", default_value_t = 32)]
    size: u32,
    /// Only write the folder, do not train.
    #[arg(long)]
    write_only: bool,
    /// Output folder of the training run.
    #[arg(long, value_name = "DIR", default_value = "artifacts/digits/run")]
    out: PathBuf,
    /// Further `vheat train` options.
    #[arg(last = true)]
    train: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits/digits.u8");
    let result = Digits::load(&fixture).and_then(|d| {
        let (n_train, n_val) = d.write_folder(&args.data, args.size)?;
        println!(
            "wrote {} ({n_train} training, {n_val} validation images, {s}x{s})",
            args.data.display(),
            s = args.size
        );
        if args.write_only {
            return Ok(());
        }
        let mut line = vec![
            "train".to_string(),
            "--data".into(),
            args.data.display().to_string(),
            "--out".into(),
            args.out.display().to_string(),
        ];
        line.extend(args.train.iter().cloned());
        run(TrainArgs::parse_from(line))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
