//! A small HTTP server on an ephemeral port of 127.0.0.1 for the download tests: every
//! connection goes to a handler the test supplies (which reads the request and answers it),
//! and whatever the handler returns is recorded, so a test can count and inspect requests.
//! The server stops when dropped, or by itself after its lifetime.
//!
//! Shared by `tests/pretrained.rs` and `tests/cli_pretrained.rs` through `#[path]`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The running server; `T` is what the handler records per request.
pub struct LocalServer<T> {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> LocalServer<T> {
    /// Starts serving; `handle` answers one connection and returns what to record (`None`
    /// records nothing, e.g. for a connection that sent no request).
    pub fn start(
        lifetime: Duration,
        handle: impl Fn(TcpStream) -> Option<T> + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(seen) = handle(stream) {
                            seen2.lock().unwrap().push(seen);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            base,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What the handler recorded so far, in order.
    pub fn requests(&self) -> Vec<T> {
        self.seen.lock().unwrap().clone()
    }
}

impl<T> Drop for LocalServer<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
