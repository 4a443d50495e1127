//! Offline mutation fuzzing of checkpoint and configuration loading (issue 7).
//!
//! ```sh
//! cargo run --release --example fuzz_loaders -- --inputs 100000 --seed 1
//! ```
//!
//! Feeds mutated `.pth`, safetensors, burnpack and configuration files (see
//! `tests/common/fuzz.rs` for the mutations) to the public loaders on the flex CPU backend,
//! each under `catch_unwind`, and prints per target how many inputs loaded, how many gave which
//! typed error, and every panic. A panic that reaches this harness is a bug; so is a crash of the
//! whole process (an abort), after which the input that caused it is still in the scratch
//! directory as `input.<ext>`. Panics that happened *inside* the loaders but were turned into
//! errors there (a reader panicking on a corrupt file) are counted separately.
//!
//! Options: `--inputs N` (default 100000), `--seed S` (default 1), `--scratch DIR` (default a
//! folder under the system temp dir), `--save DIR` (copy every panicking input there).
//! The exit status is 1 if any panic reached the harness.

#[path = "../tests/common/fuzz.rs"]
mod fuzz;
#[path = "../tests/common/pth.rs"]
mod pth;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Parser;

use fuzz::{Harness, Outcome, Rng, Target};

/// Every panic, caught or not, passes through the hook; the harness counts those it catches.
static PANICS_SEEN: AtomicUsize = AtomicUsize::new(0);

/// Feeds mutated checkpoints, configurations and images to the loaders and counts panics.
#[derive(Parser)]
struct Args {
    /// Inputs per run.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    inputs: usize,
    /// Seed of the mutations.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Folder for the inputs being tried [default: a folder under the system temp dir].
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Copy every panicking input into DIR.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
}

fn main() {
    let Args {
        inputs,
        seed,
        scratch,
        save,
    } = Args::parse();
    let scratch = scratch
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vheat-fuzz-{}", std::process::id())));

    // Silence the default hook (a fuzz run panics often inside readers, by design of the
    // inputs) but count every panic.
    std::panic::set_hook(Box::new(|_| {
        PANICS_SEEN.fetch_add(1, Ordering::Relaxed);
    }));

    let device = vheat::device_from_name("flex").expect("flex is compiled in");
    let harness = Harness::new(device, scratch.clone());
    println!(
        "fuzzing {inputs} inputs, seed {seed}, scratch {} (the last input of each target stays there)",
        scratch.display()
    );

    let mut rng = Rng::new(seed);
    let mut stats: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut escaped: Vec<(Target, usize, String)> = Vec::new();
    let start = Instant::now();
    for i in 0..inputs {
        let target = Target::ALL[i % Target::ALL.len()];
        let input = harness.input(&mut rng, target);
        let outcome = harness.run(&mut rng, target, &input);
        let name = match target {
            Target::Pth => "pth",
            Target::Safetensors => "safetensors",
            Target::Burnpack => "burnpack",
            Target::Config => "config",
        };
        let label = match &outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Err(kind) => format!("error {kind}"),
            Outcome::Panic(_) => "PANIC".to_string(),
        };
        *stats.entry((name, label)).or_default() += 1;
        if let Outcome::Panic(msg) = outcome {
            eprintln!("PANIC on input {i} ({name}): {msg}");
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir).unwrap();
                let file = dir.join(format!("panic-{seed}-{i}.{}", target.extension()));
                std::fs::write(&file, &input).unwrap();
            }
            escaped.push((target, i, msg));
        }
        if (i + 1) % 10_000 == 0 {
            println!(
                "  {} inputs, {:.0} s, {} panics reached the harness",
                i + 1,
                start.elapsed().as_secs_f64(),
                escaped.len()
            );
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "\n{inputs} inputs in {elapsed:.1} s ({:.2} ms each)",
        1e3 * elapsed / inputs as f64
    );
    for ((target, label), n) in &stats {
        println!("  {target:12} {label:28} {n}");
    }
    let caught_inside = PANICS_SEEN.load(Ordering::Relaxed) - escaped.len();
    println!("panics contained inside the loaders (turned into errors): {caught_inside}");
    println!("panics that reached the harness: {}", escaped.len());
    std::fs::remove_dir_all(&scratch).ok();
    if !escaped.is_empty() {
        std::process::exit(1);
    }
}
