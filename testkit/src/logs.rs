//! Log lines captured in memory, for tests that assert what a service logs (request ids, trace
//! context, audit lines) or that it never logs a secret.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use serde_json::Value;

type Buffer = Arc<Mutex<Vec<u8>>>;

/// Log lines as `LOG_FORMAT=json` writes them, captured in memory per test. A `#[tokio::test]`
/// runtime runs every task of its test on the test's thread, so one process-wide subscriber
/// writes each line to the buffer of the thread that logged it. (Global rather than a scoped
/// `set_default`: with scoped subscribers on parallel test threads, tracing's per-callsite
/// interest cache can race and drop lines.) Do not mix with [`ProcessLogs`] in one test binary:
/// there is one global subscriber per process.
#[derive(Clone, Default)]
pub struct CapturedLogs(Buffer);

thread_local! {
    static CAPTURE: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

/// Stops capturing on this thread when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

impl CapturedLogs {
    /// Captures this thread's log lines until the guard is dropped.
    pub fn install(&self) -> CaptureGuard {
        static GLOBAL: Once = Once::new();
        GLOBAL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt as _;
            let subscriber =
                tracing_subscriber::registry().with(platform::telemetry::json_layer(ThreadWriter));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
        });
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(self.0.clone()));
        CaptureGuard
    }

    /// Every line so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes)
            .expect("UTF-8 logs")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    /// The lines whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| line["fields"]["message"] == message)
            .collect()
    }

    /// The first line with this message whose spans include a `request` span for `route`
    /// (see `trace::TraceContextLayer`), or any line with this message when `route` is `None`.
    pub fn find(&self, message: &str, route: Option<&str>) -> Option<Value> {
        self.with_message(message).into_iter().find(|line| {
            route.is_none_or(|route| {
                line["spans"].as_array().is_some_and(|spans| {
                    spans
                        .iter()
                        .any(|s| s["name"] == "request" && s["route"] == route)
                })
            })
        })
    }
}

/// Writes to the capture buffer of the current thread, if any.
struct ThreadWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadWriter {
    type Writer = ThreadWriter;

    fn make_writer(&'a self) -> Self::Writer {
        ThreadWriter
    }
}

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(buffer) = capture.borrow().as_ref() {
                buffer.lock().expect("log buffer").extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line the whole test binary logs, as text, in one buffer: for tests that search all
/// output (of every service in the process) for what must never appear, or for one audit line.
#[derive(Clone, Default)]
pub struct ProcessLogs(Buffer);

impl ProcessLogs {
    /// Installs the process-wide subscriber at `filter` (an `EnvFilter` directive) writing
    /// here; once per test binary, the first caller's filter winning.
    pub fn install(filter: &str) -> &'static ProcessLogs {
        static LOGS: std::sync::OnceLock<ProcessLogs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = ProcessLogs::default();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(logs.clone())
                .with_ansi(false)
                .init();
            logs
        })
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    /// Everything logged so far, line by line.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }
}

impl Write for ProcessLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ProcessLogs {
    type Writer = ProcessLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
