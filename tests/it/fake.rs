//! A tiny HTTP server on 127.0.0.1 that answers with a closure and records what it received: Google's side
//! of credentials (OAuth, STS, IAM Credentials, the metadata server), or a Google that answers oddly.

use std::sync::{Arc, Mutex};

use crate::harness::{Natgw, Project, Run};

/// One request a fake received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field of a form-encoded body (values the tests use need no decoding beyond `%3A` and `%2F`).
    pub(crate) fn form(&self, name: &str) -> Option<String> {
        self.body.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.replace("%3A", ":").replace("%2F", "/").replace('+', " "))
        })
    }
}

/// What a fake answers: status, headers, body.
pub(crate) type Reply = (u16, Vec<(&'static str, String)>, String);

pub(crate) fn json_reply(v: serde_json::Value) -> Reply {
    json_status(200, v.to_string())
}

/// `status` with a body that says it is JSON (whether it is or not).
pub(crate) fn json_status(status: u16, body: String) -> Reply {
    (
        status,
        vec![("content-type", "application/json".into())],
        body,
    )
}

/// A running fake, stopped when dropped.
pub(crate) struct Fake {
    pub(crate) url: String,
    /// `127.0.0.1:PORT`, for `GCE_METADATA_HOST`.
    pub(crate) host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    pub(crate) fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let host = listener.local_addr().expect("fake address").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = Arc::new(handler);
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the fake's runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let handler = handler.clone();
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = axum::body::to_bytes(body, 1 << 20)
                            .await
                            .unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or("").to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        let (status, headers, body) = handler(&seen);
                        log.lock().expect("fake log").push(seen);
                        let mut r = http::Response::builder().status(status);
                        for (k, v) in headers {
                            r = r.header(k, v);
                        }
                        r.body(axum::body::Body::from(body)).expect("a response")
                    }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Fake {
            url: format!("http://{host}"),
            host,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("fake log").clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends a request a fake received on to `target` (the emulator) and gives back its answer: a fake in front
/// of the emulator that refuses some requests as Google would and passes on the rest. One blocking
/// HTTP/1.1 exchange with `Connection: close`; the emulator answers with a `Content-Length`.
pub(crate) fn forward(target: &str, seen: &Seen) -> Reply {
    use std::io::{Read, Write};
    let host = target.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    let target_path = match seen.query.as_str() {
        "" => seen.path.clone(),
        q => format!("{}?{q}", seen.path),
    };
    let mut request = format!(
        "{} {target_path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        seen.method,
        seen.body.len()
    );
    let hop = [
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "accept-encoding",
    ];
    for (k, v) in &seen.headers {
        if !hop.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    request.push_str("\r\n");
    request.push_str(&seen.body);
    stream
        .write_all(request.as_bytes())
        .expect("send to the emulator");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read the emulator's answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("an HTTP answer with headers");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    json_status(status, body.to_string())
}

/// `natgw ARGS...` on project `p` through a fake Google in front of its emulator, killed with SIGKILL right
/// after it has sent the first request `sent` picks: the fake passes requests on until that one has gone,
/// answers the next one and every later one 503 (which natgw would retry), and only then tells the test to
/// kill. Nothing natgw sends after the kill point reaches the emulator, however slow the machine. The fake
/// serves one request at a time; an operation's `wait` it passes on ends on the emulator's clock, so
/// nothing waits on the fake.
pub(crate) fn killed_after(
    p: &Project,
    args: &[&str],
    sent: impl Fn(&Seen) -> bool + Send + Sync + 'static,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{RecvTimeoutError, channel};

    let emulator = p.emu.url.clone();
    let passed = AtomicBool::new(false);
    let (stopped, stop) = channel();
    let google = Fake::start(move |seen| {
        if passed.load(Ordering::SeqCst) {
            let _ = stopped.send(());
            return json_status(
                503,
                serde_json::json!({"error": {"code": 503, "message": "stopped by the test", "status": "UNAVAILABLE"}})
                    .to_string(),
            );
        }
        if sent(seen) {
            passed.store(true, Ordering::SeqCst);
        }
        forward(&emulator, seen)
    });
    let mut child = Natgw::new(&p.dir)
        .args(args)
        .config(&p.config)
        .endpoint(&google.url)
        .anonymous()
        .spawn();
    loop {
        match stop.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(()) => break,
            Err(RecvTimeoutError::Timeout) => {
                if child.try_wait().expect("poll natgw").is_some() {
                    let run = Run::of(child);
                    panic!(
                        "natgw ended (exit {}) before the kill point:\n{}",
                        run.code,
                        run.all()
                    );
                }
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the fake Google stopped"),
        }
    }
    child.kill().expect("SIGKILL natgw");
    let _ = child.wait();
}
