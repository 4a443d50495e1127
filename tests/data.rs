//! The data side: the procedural dataset, image folders (and their errors), the preprocessing
//! (bit-exact with Pillow), batching.
#![cfg(feature = "train")]
#[macro_use]
mod common;

use common::{changed, temp_dir};
use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use image::{Rgb, RgbImage};
use vheat::data::{
    imagenet_classes, load_rgb, normalize_rgb8, resize_bicubic_pil, EvalTransform, ImageBatcher,
    ImageFolder, ShapesConfig, SplitMix64, SyntheticShapes, TrainTransform, IMAGENET_MEAN,
    IMAGENET_STD, SHAPE_CLASSES,
};
use vheat::Error;

/// A fresh, empty temporary folder for one test.
fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 7 + seed as u32) as u8,
            (y * 11) as u8,
            ((x ^ y) * 3 + seed as u32 * 5) as u8,
        ])
    })
}

/// `root/<class>/<i>.png|jpg` with `per_class` images per class (odd ones as JPEG).
fn make_folder(root: &Path, classes: &[&str], per_class: usize) {
    for (c, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = pattern(20 + 3 * i as u32, 16 + 2 * c as u32, (c * 10 + i) as u8);
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(format!("{i}.{ext}"))).unwrap();
        }
    }
}

fn fixture_png(name: &str) -> RgbImage {
    load_rgb(common::fixture(&format!("preprocess/{name}"))).unwrap()
}

#[test]
fn synthetic_dataset_is_deterministic_per_seed() {
    let a = SyntheticShapes::new(ShapesConfig::new(32, 64, 5)).unwrap();
    let b = SyntheticShapes::new(ShapesConfig::new(32, 64, 5)).unwrap();
    let c = SyntheticShapes::new(ShapesConfig::new(32, 64, 6)).unwrap();
    // Same seed: the same images, whatever the order of reading.
    for i in (0..64).rev() {
        assert_eq!(a.get(i).unwrap(), b.get(i).unwrap(), "item {i}");
    }
    // Another seed: other images, same labels.
    let differing = (0..64)
        .filter(|&i| a.get(i).unwrap().pixels != c.get(i).unwrap().pixels)
        .count();
    assert_eq!(differing, 64);
    for i in 0..64 {
        assert_eq!(a.get(i).unwrap().label, c.get(i).unwrap().label);
    }
    // Reading from several threads at once gives the same answers.
    let a = &a;
    let items: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    (t..64)
                        .step_by(4)
                        .map(|i| (i, a.get(i).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (i, item) in items {
        assert_eq!(item, b.get(i).unwrap());
    }
}

#[test]
fn synthetic_dataset_is_balanced_normalised_and_varied() {
    let shapes = SyntheticShapes::new(ShapesConfig::new(32, 800, 1)).unwrap();
    let mut counts = [0usize; 8];
    for i in 0..shapes.len() {
        let item = shapes.get(i).unwrap();
        assert_eq!(item.shape, [3, 32, 32]);
        assert_eq!(item.pixels.len(), 3 * 32 * 32);
        counts[item.label] += 1;
        // Normalised with ImageNet statistics: values lie in [(0-m)/s, (1-m)/s].
        for (c, plane) in item.pixels.chunks(32 * 32).enumerate() {
            let (lo, hi) = (
                -IMAGENET_MEAN[c] / IMAGENET_STD[c] - 1e-5,
                (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] + 1e-5,
            );
            assert!(plane.iter().all(|v| (lo..=hi).contains(v)));
        }
    }
    assert_eq!(counts, [100; 8]);
    assert_eq!(SyntheticShapes::class_names().len(), SHAPE_CLASSES.len());
    // The raw images are not flat: every one has a shape on a background.
    for i in 0..16 {
        let (rgb, _) = shapes.render_rgb(i);
        let min = rgb.iter().copied().fold(f32::INFINITY, f32::min);
        let max = rgb.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(max - min > 0.2, "image {i} is almost flat");
    }
}

#[test]
fn synthetic_dataset_rejects_bad_settings() {
    // Each refusal names the setting and the value given, and is not labelled a model
    // configuration error.
    let refused = |config: ShapesConfig, what: &str, found: &str| {
        let err = SyntheticShapes::new(config).expect_err("refused");
        assert!(
            matches!(&err, Error::InvalidInput { what: w, found: f, .. } if w.contains(what) && f.starts_with(found)),
            "{err}"
        );
        assert!(!err.to_string().contains("vHeat configuration"), "{err}");
    };
    refused(ShapesConfig::new(8, 10, 0), "image side", "8 pixels");
    refused(ShapesConfig::new(32, 0, 0), "number of images", "0");
    refused(
        ShapesConfig::new(32, usize::MAX, 0),
        "number of images",
        "18446744073709551615",
    );
    refused(
        ShapesConfig::new(32, 10, 0).with_max_noise(2.0),
        "noise level",
        "2",
    );
}

#[test]
fn image_folder_reads_a_tiny_generated_folder() {
    let root = temp_dir("tiny");
    make_folder(&root, &["zebra", "apple", "mango"], 4);
    std::fs::write(root.join("apple").join("notes.txt"), "not an image").unwrap();
    std::fs::write(root.join(".hidden.png"), "ignored").unwrap();

    let folder = ImageFolder::open(&root).unwrap();
    assert_eq!(folder.classes, ["apple", "mango", "zebra"]);
    assert_eq!(folder.len(), 12);
    assert!(folder
        .samples
        .iter()
        .all(|s| s.path.extension().unwrap() != "txt"));

    let (train, val) = folder.split(0.25, 3).unwrap();
    assert_eq!((train.len(), val.len()), (9, 3));
    for label in 0..3 {
        assert_eq!(val.samples.iter().filter(|s| s.label == label).count(), 1);
    }
    // The split is a function of the seed.
    assert_eq!(folder.split(0.25, 3).unwrap().1, val);

    let eval = val.eval_dataset(EvalTransform::new(32));
    let item = eval.get(0).unwrap();
    assert_eq!(item.shape, [3, 32, 32]);
    assert_eq!(item.label, val.samples[0].label);
    // Decoding is exact for PNG: the item equals the transform of the file's pixels.
    let png = val
        .samples
        .iter()
        .position(|s| s.path.extension().unwrap() == "png")
        .unwrap();
    let expected = EvalTransform::new(32).apply(&load_rgb(&val.samples[png].path).unwrap());
    assert_eq!(eval.get(png).unwrap().pixels, expected);

    let training = train.train_dataset(TrainTransform::new(24), 9);
    let a = training.get(0).unwrap();
    assert_eq!(a.shape, [3, 24, 24]);
    assert_eq!(a.label, train.samples[0].label);

    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn image_folder_uses_train_and_val_sub_folders() {
    let root = temp_dir("presplit");
    make_folder(&root.join("train"), &["a", "b"], 3);
    make_folder(&root.join("val"), &["a", "b"], 2);
    let (train, val) = ImageFolder::open_split(&root, 0.5, 0).unwrap();
    assert_eq!((train.len(), val.len()), (6, 4));
    assert_eq!(train.classes, val.classes);

    make_folder(&root.join("val"), &["c"], 1);
    assert!(matches!(
        ImageFolder::open_split(&root, 0.5, 0),
        Err(Error::FolderLayout { reason, .. }) if reason.contains("different classes")
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn empty_folder_is_a_clear_error() {
    let root = temp_dir("empty");
    let err = ImageFolder::open(&root).unwrap_err();
    assert!(
        matches!(&err, Error::EmptyImageFolder { path, .. } if path == &root),
        "{err}"
    );
    assert!(
        err.to_string().contains("one sub-folder per class"),
        "{err}"
    );

    let missing = root.join("nope");
    let err = ImageFolder::open(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::EmptyImageFolder { reason, .. } if reason.contains("does not exist"))
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn class_folder_without_images_is_a_clear_error() {
    let root = temp_dir("noimages");
    make_folder(&root, &["cat"], 2);
    let dog = root.join("dog");
    std::fs::create_dir_all(&dog).unwrap();
    std::fs::write(dog.join("readme.txt"), "no pictures here").unwrap();
    let err = ImageFolder::open(&root).unwrap_err();
    match &err {
        Error::EmptyClassFolder {
            class,
            path,
            ignored,
        } => {
            assert_eq!(class, "dog");
            assert_eq!(path, &dog);
            assert_eq!(*ignored, 1);
        }
        other => panic!("expected EmptyClassFolder, got {other:?}"),
    }
    assert!(err.to_string().contains("dog"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn unreadable_image_is_a_clear_error() {
    let root = temp_dir("unreadable");
    make_folder(&root, &["cat", "dog"], 2);
    let bad = root.join("dog").join("broken.png");
    std::fs::write(&bad, b"this is not a PNG file").unwrap();
    let err = ImageFolder::open(&root).unwrap_err();
    assert!(
        matches!(&err, Error::ImageRead { path, .. } if path == &bad),
        "{err}"
    );
    assert!(err.to_string().contains("broken.png"), "{err}");

    // A file whose header is fine but whose data is cut off passes the up-front check and
    // fails when read, as an error of the dataset (training stops with that message).
    std::fs::remove_file(&bad).unwrap();
    let cut = root.join("dog").join("cut.png");
    let mut bytes = Vec::new();
    pattern(40, 40, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let folder = ImageFolder::open(&root).unwrap();
    let index = folder.samples.iter().position(|s| s.path == cut).unwrap();
    let data = folder.eval_dataset(EvalTransform::new(32));
    assert!(matches!(data.load(index), Err(Error::ImageRead { path, .. }) if path == cut));
    let message = data.get(index).unwrap_err().to_string();
    assert!(message.contains("cut.png"), "{message}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn eval_preprocessing_is_bit_exact_with_pillow() {
    let input = fixture_png("input.png");
    assert_eq!(input.dimensions(), (61, 47));
    for size in [32, 64] {
        let expected = fixture_png(&format!("eval_s{size}.png"));
        let ours = EvalTransform::new(size).crop(&input);
        assert_eq!(ours.dimensions(), (size, size));
        let diff = ours
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "S={size}: {diff} bytes differ from Pillow");
        // and the tensor is torchvision's ToTensor + Normalize of those bytes
        assert_eq!(
            EvalTransform::new(size).apply(&input),
            normalize_rgb8(&expected)
        );
    }
    let expected = fixture_png("resize_20x90.png");
    assert_eq!(resize_bicubic_pil(&input, 20, 90), expected);
}

#[test]
fn normalisation_matches_torchvision_arithmetic() {
    let img = RgbImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgb([0, 128, 255])
        } else {
            Rgb([1, 2, 3])
        }
    });
    let t = normalize_rgb8(&img);
    // [C, H, W]: channel planes of 2 values
    assert_eq!(t.len(), 6);
    assert_eq!(t[0], (0.0f32 / 255.0 - 0.485) / 0.229);
    assert_eq!(t[2], (128.0f32 / 255.0 - 0.456) / 0.224);
    assert_eq!(t[5], (3.0f32 / 255.0 - 0.406) / 0.225);
}

#[test]
fn train_transform_crops_within_the_image_and_flips() {
    let t = TrainTransform::new(16);
    let mut rng = SplitMix64::new(4);
    for _ in 0..200 {
        let (x, y, w, h) = t.crop_box(50, 30, &mut rng);
        assert!(w >= 1 && h >= 1 && x + w <= 50 && y + h <= 30);
        let area = (w * h) as f64 / 1500.0;
        assert!(area <= 1.0 + 1e-9);
    }
    // The whole image as the crop, always flipped: the output is the mirrored resize.
    let img = pattern(16, 16, 3);
    let whole = changed(TrainTransform::new(16), |t| {
        t.scale = (1.0, 1.0);
        t.ratio = (1.0, 1.0);
        t.flip = 1.0;
    });
    let out = whole.crop(&img, &mut rng);
    assert_eq!(out, image::imageops::flip_horizontal(&img));
}

#[test]
fn imagenet_class_names_are_complete() {
    let names = imagenet_classes();
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "tench");
    assert_eq!(names[281], "tabby");
    assert_eq!(names[999], "toilet tissue");
    assert!(names.iter().all(|n| !n.is_empty()));
}

per_backend! {
    fn batches_stack_items_on_the_device(d) {
        let shapes = SyntheticShapes::new(ShapesConfig::new(16, 5, 2)).unwrap();
        let items: Vec<_> = (0..5).map(|i| shapes.get(i).unwrap()).collect();
        let batch = ImageBatcher.batch(items.clone(), d);
        assert_eq!(batch.images.dims(), [5, 3, 16, 16]);
        assert_eq!(batch.images.device(), *d);
        let values = common::values(batch.images);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(&values[i * 768..(i + 1) * 768], &item.pixels[..]);
        }
        let labels = batch.targets.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(labels, vec![0, 1, 2, 3, 4]);
    }
}

/// Issue 28, case 14: a folder laid out otherwise than ROOT/CLASS/IMAGE says how, naming a
/// folder where it found the images, and is never labelled an invalid model configuration.
#[test]
fn misplaced_images_say_where_they_are_and_the_layout_expected() {
    let layout = |err: &Error| {
        let text = err.to_string();
        assert!(!text.contains("vHeat configuration"), "{text}");
        assert!(text.contains("ROOT/CLASS/IMAGE"), "{text}");
        text
    };
    // Images one level too deep: ROOT/CLASS/SUB/IMAGE.
    let root = temp_dir("nested");
    make_folder(&root.join("cat"), &["2024"], 2);
    make_folder(&root.join("dog"), &["2024"], 2);
    let err = ImageFolder::open(&root).unwrap_err();
    assert!(matches!(err, Error::FolderLayout { .. }), "{err}");
    let text = layout(&err);
    assert!(
        text.contains(&root.join("cat").join("2024").display().to_string()),
        "{text}"
    );
    assert!(text.contains("nested"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();

    // train/ without val/, and val/ without train/.
    for (present, missing) in [("train", "val"), ("val", "train")] {
        let root = temp_dir(&format!("only-{present}"));
        make_folder(&root.join(present), &["cat", "dog"], 2);
        let err = ImageFolder::list_split(&root, 0.2, 0).unwrap_err();
        assert!(matches!(err, Error::FolderLayout { .. }), "{err}");
        let text = layout(&err);
        assert!(
            text.contains(&root.join(missing).display().to_string()),
            "{text}"
        );
        assert!(text.contains("no "), "{text}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    // Images directly in the root, with no class folders.
    let root = temp_dir("flat");
    make_folder(&root, &["cat"], 3);
    for f in std::fs::read_dir(root.join("cat")).unwrap() {
        let f = f.unwrap().path();
        std::fs::rename(&f, root.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir(root.join("cat")).unwrap();
    let err = ImageFolder::open(&root).unwrap_err();
    assert!(matches!(err, Error::EmptyImageFolder { .. }), "{err}");
    let text = layout(&err);
    assert!(text.contains("3 images lie directly in it"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();

    // No images at all: the class folder is named, and nothing nested is claimed.
    let root = temp_dir("none");
    std::fs::create_dir_all(root.join("cat").join("empty")).unwrap();
    let err = ImageFolder::open(&root).unwrap_err();
    assert!(matches!(err, Error::EmptyClassFolder { .. }), "{err}");
    assert!(!err.to_string().contains("vHeat configuration"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 28: the up-front decode reports every image it reads, good and bad, to its progress
/// callback (what `vheat train`'s bar counts), and keeps only those that decode.
#[test]
fn decoding_ticks_once_per_image_for_the_progress_bar() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let root = temp_dir("decode-ticks");
    make_folder(&root, &["cat", "dog"], 3);
    std::fs::write(root.join("dog").join("broken.png"), b"not a png").unwrap();
    let folder = ImageFolder::list(&root).unwrap();
    assert_eq!(folder.len(), 7);
    let ticks = AtomicUsize::new(0);
    let (kept, bad) = folder
        .decoded_with(true, &|| {
            ticks.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(ticks.load(Ordering::Relaxed), 7);
    assert_eq!((kept.len(), bad.len()), (6, 1));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 28, case 14: the validation fraction is a training option, named by its flag.
#[test]
fn a_validation_fraction_out_of_range_names_its_flag() {
    let root = temp_dir("fraction");
    make_folder(&root, &["cat", "dog"], 2);
    let folder = ImageFolder::list(&root).unwrap();
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let err = folder.split(bad, 0).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTrainingOption { option, .. } if option == "--val-fraction"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
