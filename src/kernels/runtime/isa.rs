//! Which vector instructions the host kernels run with, chosen at run time.
//!
//! Every kernel's inner loop is one portable function, compiled three times: as it is, with
//! AVX2 + FMA enabled, and with AVX-512 (F, VL, BW, DQ) enabled, so that the compiler
//! vectorises it for 8 or 16 lanes. [`active`] picks the widest the CPU has when the process
//! first asks. `VHEAT_KERNEL_ISA=portable|avx2|avx512` caps the choice (for benchmarks), and
//! [`force`] caps it at run time (the tests use it, so that CI covers every path the machine
//! can run: AVX-512, AVX2 and portable on an AVX-512 machine; [`force_portable`] is the
//! portable case).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A family of vector instructions a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Whatever the target's baseline is (SSE2 on x86-64), no run-time features.
    Portable,
    /// AVX2 with FMA (256-bit vectors).
    Avx2,
    /// AVX-512 F/VL/BW/DQ (512-bit vectors).
    Avx512,
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "AVX2",
            Isa::Avx512 => "AVX-512",
        })
    }
}

/// The name of the environment variable that caps [`detected`]'s choice.
pub const KERNEL_ISA_ENV: &str = "VHEAT_KERNEL_ISA";

/// The run-time cap set by [`force`]: `NO_CAP`, or an [`Isa`] as `u8`.
static FORCED: AtomicU8 = AtomicU8::new(NO_CAP);
const NO_CAP: u8 = u8::MAX;

/// The widest instruction family this CPU supports, capped by `VHEAT_KERNEL_ISA` if set
/// (an unknown value is ignored). Detected once per process.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let cpu = cpu_isa();
        let cap = match std::env::var(KERNEL_ISA_ENV).as_deref() {
            Ok("portable") => Isa::Portable,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        cpu.min(cap)
    })
}

fn cpu_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The family the kernels use now: [`detected`], capped by [`force`].
pub fn active() -> Isa {
    let cpu = detected();
    match FORCED.load(Ordering::Relaxed) {
        NO_CAP => cpu,
        cap => cpu.min(match cap {
            0 => Isa::Portable,
            1 => Isa::Avx2,
            _ => Isa::Avx512,
        }),
    }
}

/// Caps the family every kernel runs at `cap` (or at what the CPU has, if less); `None`
/// lifts the cap. The results are the same up to rounding on every family; this exists so
/// tests can check each path the machine can run.
pub fn force(cap: Option<Isa>) {
    FORCED.store(cap.map_or(NO_CAP, |isa| isa as u8), Ordering::Relaxed);
}

/// Makes every kernel run its portable code (`true`) or the detected family again (`false`):
/// [`force`]`(Some(Isa::Portable))` or [`force`]`(None)`.
pub fn force_portable(on: bool) {
    force(on.then_some(Isa::Portable));
}

/// The families this machine can run, widest first: the caps a test passes to [`force`] to
/// check every path.
pub fn runnable() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .filter(|&isa| isa <= detected())
        .collect()
}

/// Serialises the unit tests that flip [`force_portable`].
#[cfg(test)]
pub(crate) fn tests_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Defines `fn $name(args) -> ret` that runs `$body(args)` compiled for [`active`]'s family.
/// `$body` must be `#[inline(always)]` so that it is compiled inside each variant.
///
/// With `=> fused $body;`, `$body` takes a `const FUSED: bool` parameter: `true` in the AVX-512
/// and AVX2 variants, which have fused multiply-adds, so that `math::madd` is one instruction
/// there; `false` in the portable one, where `f32::mul_add` would be a library call.
macro_rules! isa_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path;) => {
        $crate::kernels::isa::isa_dispatch!(
            @variants [$(#[$meta])*] $vis $name ($($arg: $ty),*) ($($ret)?) $body, $body
        );
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => fused $body:ident;) => {
        $crate::kernels::isa::isa_dispatch!(
            @variants [$(#[$meta])*] $vis $name ($($arg: $ty),*) ($($ret)?) $body::<true>, $body::<false>
        );
    };
    (@variants [$($meta:tt)*] $vis:vis $name:ident ($($arg:ident : $ty:ty),*) ($($ret:ty)?) $vector:path, $portable:path) => {
        $($meta)*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $vector($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $vector($($arg),*)
                }
                match $crate::kernels::isa::active() {
                    // SAFETY: `active` only names a family the CPU reported at run time.
                    $crate::kernels::isa::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: as above.
                    $crate::kernels::isa::Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::kernels::isa::Isa::Portable => {}
                }
            }
            $portable($($arg),*)
        }
    };
}
pub(crate) use isa_dispatch;
