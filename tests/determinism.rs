//! The same seed gives the same model. Burn's random generator is global to the backend, so
//! this lives in its own test binary: no other test draws random numbers concurrently.

mod common;

use burn::prelude::*;
use common::*;
use vheat::VHeatConfig;

#[test]
fn deterministic_under_a_seed() {
    let d = device();
    let config = VHeatConfig::new(vec![1, 1, 2, 1], vec![8, 16, 32, 32])
        .with_layer_scale(Some(0.5))
        .with_num_classes(3)
        .with_img_size(48);
    let x = Tensor::<4>::ones([2, 3, 48, 48], &d);
    let a = config.init_seeded(&d, 7).unwrap();
    let b = config.init_seeded(&d, 7).unwrap();
    let c = config.init_seeded(&d, 8).unwrap();
    let (ya, yb, yc) = (
        values(a.forward(x.clone())),
        values(b.forward(x.clone())),
        values(c.forward(x.clone())),
    );
    assert_eq!(ya, yb, "same seed, same model");
    assert_ne!(ya, yc, "another seed, another model");
    assert_eq!(ya, values(a.forward(x)), "same input, same output");
}
