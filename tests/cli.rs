//! The `vheat` command-line tool: the clap definitions are consistent, every option is
//! documented with its default, parse errors are clap errors, and the subcommands work end to
//! end through the library functions (and once through the built binary).
#![cfg(feature = "cli")]
mod common;

use std::path::PathBuf;
use std::process::Command as Process;

use burn::prelude::*;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use vheat::cli::classify::ClassifyArgs;
use vheat::cli::convert::ConvertArgs;
use vheat::cli::info::{info, render};
use vheat::cli::train::TrainArgs;
use vheat::cli::{Cli, Command};
use vheat::data::SyntheticShapes;
use vheat::train::load_checkpoint;
use vheat::{Error, VHeatConfig};

use common::{fixture, fixture_config, fixture_json, unique_temp_dir, Tensors, ATOL, RTOL};

const SUBCOMMANDS: [&str; 7] = [
    "classify", "train", "convert", "export", "info", "bench", "verify",
];

/// `n` with a comma every three digits, written out here rather than taken from the crate.
fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = s.len();
    while end > 3 {
        groups.push(&s[end - 3..end]);
        end -= 3;
    }
    groups.push(&s[..end]);
    groups.reverse();
    groups.join(",")
}

/// The rendered `--help` of `vheat <sub>`, through the parser as a user gets it.
fn help_of(sub: &str) -> String {
    let err = Cli::try_parse_from(["vheat", sub, "--help"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DisplayHelp);
    err.to_string()
}

#[test]
fn clap_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_option_of_every_subcommand_is_documented_with_its_default() {
    let cli = Cli::command();
    for sub in SUBCOMMANDS {
        let help = help_of(sub);
        let cmd = cli.find_subcommand(sub).expect("subcommand exists");
        assert!(cmd.get_about().is_some(), "{sub} has no description");
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_help().is_some(), "{sub}: {id} has no doc comment");
            if let Some(long) = arg.get_long() {
                assert!(
                    help.contains(&format!("--{long}")),
                    "{sub}: --{long} missing from help:\n{help}"
                );
            }
            for default in arg.get_default_values() {
                let shown = format!("[default: {}]", default.to_string_lossy());
                assert!(
                    help.contains(&shown),
                    "{sub}: {id} does not show {shown}:\n{help}"
                );
            }
        }
    }
}

#[test]
fn help_shows_known_options_and_defaults() {
    let train = help_of("train");
    for text in [
        "--batch <N>",
        "[default: 64]",
        "--out <DIR>",
        "[default: artifacts/train]",
        "--val-fraction <F>",
        "[default: 0.2]",
        "--train-images <N>",
        "[default: 12288]",
        "--backend <NAME>",
        "[default: flex]",
        "--resume",
        "--devices",
    ] {
        assert!(
            train.contains(text),
            "train --help lacks {text:?}:\n{train}"
        );
    }
    let bench = help_of("bench");
    for text in [
        "--form <FORM>",
        "[default: both]",
        "--dtype",
        "[default: f32]",
        "[default: 224]",
    ] {
        assert!(
            bench.contains(text),
            "bench --help lacks {text:?}:\n{bench}"
        );
    }
    let info = help_of("info");
    assert!(
        info.contains("--size <S>") && info.contains("[default: 224]"),
        "{info}"
    );
    let classify = help_of("classify");
    for text in [
        "--from <PATH>",
        "--pretrained <NAME>",
        "--top <K>",
        "[default: 5]",
    ] {
        assert!(
            classify.contains(text),
            "classify --help lacks {text:?}:\n{classify}"
        );
    }
    let top = Cli::try_parse_from(["vheat", "--help"])
        .unwrap_err()
        .to_string();
    for sub in SUBCOMMANDS {
        assert!(top.contains(sub), "vheat --help lacks {sub}:\n{top}");
    }
}

#[test]
fn parse_errors_are_clap_errors() {
    let kind = |argv: &[&str]| Cli::try_parse_from(argv).unwrap_err().kind();
    assert_eq!(
        kind(&["vheat"]),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    assert_eq!(kind(&["vheat", "frobnicate"]), ErrorKind::InvalidSubcommand);
    assert_eq!(
        kind(&["vheat", "train", "--epochs", "many"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(
        kind(&["vheat", "train", "--no-such-flag"]),
        ErrorKind::UnknownArgument
    );
    assert_eq!(
        kind(&["vheat", "bench", "--form", "sideways"]),
        ErrorKind::InvalidValue
    );
    assert_eq!(
        kind(&["vheat", "classify", "--top", "0", "--from", "m.bpk", "a.png"]),
        ErrorKind::ValueValidation
    );
    // Neither weights nor images.
    assert_eq!(
        kind(&["vheat", "classify"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        kind(&["vheat", "classify", "a.png"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        kind(&["vheat", "classify", "--from", "m.bpk"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        kind(&[
            "vheat",
            "classify",
            "a.png",
            "--from",
            "m.bpk",
            "--pretrained",
            "vheat_tiny"
        ]),
        ErrorKind::ArgumentConflict
    );
    // --from fine-tunes, so it needs --data.
    assert_eq!(
        kind(&["vheat", "train", "--from", "m.bpk"]),
        ErrorKind::MissingRequiredArgument
    );
    // And a valid line parses to the right values.
    let cli =
        Cli::try_parse_from(["vheat", "train", "--devices", "flex,flex", "--epochs", "3"]).unwrap();
    let Command::Train(t) = cli.command else {
        panic!("not train")
    };
    assert_eq!(
        t.devices,
        Some(vec!["flex".to_string(), "flex".to_string()])
    );
    assert_eq!((t.epochs, t.batch, t.seed), (Some(3), None, 0));
}

#[test]
fn info_of_tiny_reports_the_published_parameter_counts() {
    // Published counts (README; tests/fixtures/param_counts.json, from the PyTorch reference).
    let counts = fixture_json("param_counts.json");
    let trainable = counts["vheat_tiny"].as_u64().unwrap();
    let inference = counts["vheat_tiny_infer_mode"].as_u64().unwrap();
    assert_eq!(with_commas(trainable), "30,853,480");
    let cli = Cli::try_parse_from(["vheat", "info", "--config", "tiny"]).unwrap();
    let Command::Info(args) = cli.command else {
        panic!("not info")
    };
    let config = vheat::cli::resolve_config(&args.config).unwrap();
    let report = info(config, args.size).unwrap();
    let text = render(&report, &args.config, args.size).unwrap();
    assert!(text.contains(&with_commas(trainable)), "{text}");
    assert!(text.contains(&with_commas(inference)), "{text}");
    // The published 4.9 GFLOPs (fvcore MACs) of vHeat-T at 224², to two decimals.
    assert!(text.contains("4.94 G"), "{text}");
}

#[test]
fn config_names_files_and_errors() {
    assert_eq!(
        vheat::cli::resolve_config("small").unwrap(),
        VHeatConfig::small()
    );
    let err = vheat::cli::resolve_config("huge").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let err = vheat::cli::resolve_config("/nonexistent/config.json").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/config.json"),
        "{err}"
    );
}

#[test]
fn classify_on_missing_files_is_a_typed_error_naming_the_path() {
    let args = ClassifyArgs::try_parse_from([
        "classify",
        "/nonexistent.png",
        "--from",
        "/nonexistent.bpk",
    ])
    .unwrap();
    let err = vheat::cli::classify::run(args).unwrap_err();
    match &err {
        // The checkpoint's JSON is read first.
        Error::CheckpointRead { path, .. } => assert_eq!(path, &PathBuf::from("/nonexistent.json")),
        other => panic!("expected CheckpointRead, got {other:?}"),
    }
    // A name that is not published is refused before any download is tried.
    let args =
        ClassifyArgs::try_parse_from(["classify", "a.png", "--pretrained", "vheat_huge"]).unwrap();
    let err = vheat::cli::classify::run(args).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownWeights { name, known } if name == "vheat_huge" && known.contains("vheat_tiny")),
        "{err}"
    );
}

#[test]
fn convert_pth_to_bpk_keeps_the_reference_outputs() {
    let dir = unique_temp_dir("cli-convert");
    // The fixture's configuration as a plain configuration file.
    let config = fixture_config("micro_tiny.json");
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let out = dir.join("micro.bpk");
    let args = ConvertArgs::try_parse_from([
        "convert".as_ref(),
        fixture("micro_tiny.pth").as_os_str(),
        out.as_os_str(),
        "--config".as_ref(),
        config_path.as_os_str(),
    ])
    .unwrap();
    vheat::cli::convert::run(args).unwrap();
    let device = Device::default();
    let (model, meta) = load_checkpoint(&out, &device).unwrap();
    assert_eq!(meta.config, config);
    let fx = Tensors::open("micro_tiny.io.safetensors");
    let logits = model.forward(fx.get::<4>("x64.input", &device));
    let got = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let (_, want) = fx.raw("x64.logits");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        // The parity tests' bound (see common::ATOL): the converted weights are the reference's.
        assert!((g - w).abs() <= ATOL + RTOL * w.abs(), "{g} vs {w}");
    }
    // .pth is read, not written: a typed error that writes nothing.
    let back = dir.join("back.pth");
    let args = ConvertArgs::try_parse_from(["convert".as_ref(), out.as_os_str(), back.as_os_str()])
        .unwrap();
    assert!(matches!(
        vheat::cli::convert::run(args),
        Err(Error::Unsupported(_))
    ));
    assert!(!back.exists());
    // The export direction: our .bpk -> the reference's safetensors, which the existing
    // safetensors importer reads back to the same logits.
    let exported = dir.join("back.safetensors");
    let args =
        ConvertArgs::try_parse_from(["convert".as_ref(), out.as_os_str(), exported.as_os_str()])
            .unwrap();
    vheat::cli::convert::run(args).unwrap();
    let again = vheat::VHeat::load_safetensors(&exported, &config, &device).unwrap();
    let x = fx.get::<4>("x64.input", &device);
    assert_eq!(
        again
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        model.forward(x).into_data().try_to_vec::<f32>().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn convert_refuses_to_write_over_its_config_file() {
    let dir = unique_temp_dir("cli-convert-config");
    let config = fixture_config("micro_tiny.json");
    let config_path = dir.join("my.json");
    let text = serde_json::to_string(&config).unwrap();
    std::fs::write(&config_path, &text).unwrap();
    // my.bpk's metadata would be my.json: the configuration the command was given.
    let args = ConvertArgs::try_parse_from([
        "convert".as_ref(),
        fixture("micro_tiny.pth").as_os_str(),
        dir.join("my.bpk").as_os_str(),
        "--config".as_ref(),
        config_path.as_os_str(),
    ])
    .unwrap();
    let err = vheat::cli::convert::run(args).unwrap_err();
    assert!(matches!(err, Error::OutputIsInput { .. }), "{err}");
    assert!(err.to_string().contains("my.json"), "{err}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), text);
    assert!(!dir.join("my.bpk").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_one_tiny_epoch_end_to_end_then_classify() {
    let dir = unique_temp_dir("cli-train");
    let out = dir.join("run");
    let args = TrainArgs::try_parse_from([
        "train".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--size".as_ref(),
        "32".as_ref(),
        "--train-images".as_ref(),
        "32".as_ref(),
        "--val-images".as_ref(),
        "16".as_ref(),
        "--batch".as_ref(),
        "16".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .unwrap();
    let outcome = vheat::cli::train::train(&args).unwrap().expect("trained");
    assert_eq!(outcome.report.epochs.len(), 1);
    let acc = outcome.report.final_accuracy().expect("validated");
    assert!((0.0..=100.0).contains(&acc), "accuracy {acc}");
    assert_eq!(outcome.checkpoint, out.join("model.bpk"));
    let (_, meta) = load_checkpoint(&outcome.checkpoint, &Device::default()).unwrap();
    assert_eq!(meta.classes, SyntheticShapes::class_names());
    assert_eq!(meta.image_size, 32);

    // The written checkpoint classifies images drawn by `classify --synthetic`.
    let pics = dir.join("pics");
    let args = ClassifyArgs::try_parse_from([
        "classify".as_ref(),
        "--from".as_ref(),
        outcome.checkpoint.as_os_str(),
        "--synthetic".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        pics.as_os_str(),
    ])
    .unwrap();
    vheat::cli::classify::run(args).unwrap();
    assert_eq!(std::fs::read_dir(&pics).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_binary_helps_and_reports_errors_without_panicking() {
    let bin = env!("CARGO_BIN_EXE_vheat");
    let help = Process::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("classify") && text.contains("train"),
        "{text}"
    );

    let run = Process::new(bin)
        .args(["classify", "/nonexistent.png", "--from", "/nonexistent.bpk"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("/nonexistent"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let bad = Process::new(bin)
        .args(["train", "--epochs", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&bad.stderr).contains("panicked"));

    // Issue 28: an --out that is a file (case 7) and absurd dataset sizes (case 8) are typed
    // errors (status 1), not panics (status 101).
    let dir = unique_temp_dir("cli-bin-errors");
    let file = dir.join("a-file");
    std::fs::write(&file, b"keep").unwrap();
    let runs: [&[&str]; 2] = [
        &["train", "--epochs", "1", "--out", file.to_str().unwrap()],
        &["train", "--train-images", "18446744073709551615"],
    ];
    for args in runs {
        let run = Process::new(bin).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    // Case 10: sizes beyond the memory limit are refused before anything is allocated.
    for args in [
        &["info", "--config", "tiny", "--size", "8192"][..],
        &[
            "train",
            "--batch",
            "1000000000",
            "--out",
            dir.to_str().unwrap(),
        ],
        &["bench", "--config", "tiny", "--size", "20000"],
    ] {
        let run = Process::new(bin)
            .args(args)
            .env("VHEAT_MEMORY_LIMIT", "1G")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("memory limit of 1.0 GiB"),
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 28, case 10: `classify --size` is checked against the memory estimate before the
/// input is allocated, naming the size and the limit (without the check, resizing one image to
/// 100000² allocates 120 GB and the process aborts).
#[test]
fn classify_at_an_absurd_size_is_refused_by_the_memory_estimate() {
    let dir = unique_temp_dir("cli-classify-memory");
    let config = common::tiny_config();
    let model = config.init(&common::cpu());
    let meta = vheat::train::CheckpointMeta {
        config: config.clone(),
        classes: SyntheticShapes::class_names(),
        image_size: config.img_size,
        crop_pct: 1.0,
    };
    let checkpoint = dir.join("m.bpk");
    vheat::train::save_checkpoint(&model, &meta, &checkpoint).unwrap();
    let image = dir.join("a.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save(&image)
        .unwrap();
    let run = Process::new(env!("CARGO_BIN_EXE_vheat"))
        .args(["classify", "--size", "100000", "--from"])
        .arg(&checkpoint)
        .arg(&image)
        .env("VHEAT_MEMORY_LIMIT", "1G")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("100000x100000"), "{stderr}");
    assert!(stderr.contains("memory limit of 1.0 GiB"), "{stderr}");
    // At the checkpoint's own size the same command classifies.
    let run = Process::new(env!("CARGO_BIN_EXE_vheat"))
        .args(["classify", "--from"])
        .arg(&checkpoint)
        .arg(&image)
        .env("VHEAT_MEMORY_LIMIT", "1G")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
