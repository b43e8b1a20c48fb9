//! A real registry for the tests: Debian's `docker-registry` on a free loopback port with
//! its own storage, plain HTTP or TLS with basic auth (a self-signed certificate made with
//! `openssl`, an htpasswd file made with `htpasswd -B`), killed when dropped.

use crate::common::{require_tool, run_ok};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The user the TLS registry accepts.
pub(crate) const USER: &str = "builder";
/// Its password.
pub(crate) const PASSWORD: &str = "s3cret-pa55";

/// A running registry.
pub(crate) struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    child: Option<Child>,
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Registry {
    /// A plain-HTTP registry without authentication.
    pub(crate) fn plain() -> Self {
        Self::start(false)
    }

    /// A TLS registry with basic auth ([`USER`], [`PASSWORD`]).
    pub(crate) fn tls_with_auth() -> Self {
        Self::start(true)
    }

    fn start(tls: bool) -> Self {
        require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if tls {
            require_tool("openssl", "openssl");
            require_tool("htpasswd", "apache2-utils");
            make_certificates(dir.path());
            let htpasswd = run_ok(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            fs_err::write(dir.path().join("htpasswd"), htpasswd.stdout).expect("htpasswd");
            config.push_str(&format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\nauth:\n  htpasswd:\n    realm: imgbuild-test\n    path: {0}/htpasswd\n",
                dir.path().display()
            ));
        }
        fs_err::write(dir.path().join("config.yml"), config).expect("config");
        let mut registry = Self {
            dir,
            port,
            tls,
            child: None,
        };
        registry.restart();
        registry
    }

    /// Starts (again) on the same port with the same storage.
    pub(crate) fn restart(&mut self) {
        let log = fs_err::File::create(self.dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.into_parts().0)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on port {}: {}",
                self.port,
                fs_err::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Where it keeps blobs.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The flags imgbuild needs to reach it.
    pub(crate) fn imgbuild_args(&self) -> Vec<String> {
        if self.tls {
            vec![
                "--registry-ca".into(),
                self.dir.path().join("ca.pem").display().to_string(),
            ]
        } else {
            vec!["--insecure-registry".into(), self.host()]
        }
    }

    /// The flags skopeo needs to reach it.
    pub(crate) fn skopeo_args(&self) -> Vec<String> {
        let mut args = vec!["--tls-verify=false".to_owned()];
        if self.tls {
            args.push(format!("--creds={USER}:{PASSWORD}"));
        }
        args
    }
}

/// A throwaway CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`cert.pem`, `key.pem`): rustls, like browsers, refuses a CA certificate used directly
/// as the server's.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=imgbuild test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    fs_err::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a [`Proxy`] does to the traffic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mischief {
    /// Flips the last byte of every blob it serves (manifests pass untouched).
    CorruptBlobs,
    /// Answers the first of each kind of request (method and path, upload session ids left
    /// out) with `503 Service Unavailable` without forwarding it.
    FailEachOnce,
    /// Serves every blob without a `Content-Length`, followed by zeros forever.
    EndlessBlobs,
    /// Serves every blob with `Content-Length: 3000000000` (the 2.9 GB of the issue),
    /// followed by zeros forever.
    HugeBlobLength,
    /// Serves only the first half of every blob, without a `Content-Length`.
    ShortBlobs,
    /// Rewrites the `size` of every layer in the manifests it serves to this.
    LayerSizes(u64),
    /// Pads every manifest it serves with 5 MiB of spaces (still valid JSON).
    HugeManifests,
}

/// A one-request-per-connection HTTP proxy in front of a registry that misbehaves as told.
/// Stops when dropped.
pub(crate) struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

impl Proxy {
    /// Starts forwarding to `upstream_port`.
    pub(crate) fn start(upstream_port: u16, mischief: Mischief) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (flag, count, total) = (stop.clone(), failed.clone(), sent.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let seen = Arc::new(Mutex::new(HashSet::new()));
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (seen, count, total) = (seen.clone(), count.clone(), total.clone());
                        std::thread::spawn(move || {
                            let _ =
                                serve_one(client, upstream_port, mischief, &seen, &count, &total);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            port,
            stop,
            failed,
            sent,
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many requests were answered with 503.
    pub(crate) fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// How many response bytes the client accepted (for the endless mischiefs).
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), buf))
}

fn serve_one(
    mut client: TcpStream,
    upstream_port: u16,
    mischief: Mischief,
    seen: &Mutex<HashSet<String>>,
    failed: &AtomicUsize,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let (head, _) = read_head(&mut client)?;
    let request_line = head.lines().next().unwrap_or("");
    let kind = request_line.split('?').next().unwrap_or("");
    let kind = match kind.find("/uploads/") {
        Some(i) => kind[..i + "/uploads/".len()].to_owned(),
        None => kind.to_owned(),
    };
    let fail = matches!(mischief, Mischief::FailEachOnce)
        && seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kind);
    if fail {
        failed.fetch_add(1, Ordering::Relaxed);
    }
    let length: u64 = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = Vec::new();
    (&mut client).take(length).read_to_end(&mut body)?;
    if fail {
        client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let is_blob = head
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("GET ") && l.contains("/blobs/sha256:"));
    let is_manifest = head
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("GET ") && l.contains("/manifests/"));
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())?;
    upstream.write_all(&body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    if matches!(mischief, Mischief::CorruptBlobs)
        && is_blob
        && response.starts_with(b"HTTP/1.1 200")
    {
        if let Some(last) = response.last_mut() {
            *last ^= 0xff;
        }
    }
    let ok = response.starts_with(b"HTTP/1.1 200");
    match mischief {
        Mischief::EndlessBlobs | Mischief::HugeBlobLength if is_blob && ok => {
            let (upstream_head, body) = split_response(&response);
            let length = if matches!(mischief, Mischief::HugeBlobLength) {
                "Content-Length: 3000000000\r\n"
            } else {
                ""
            };
            let head = format!(
                "{}{length}Connection: close\r\n\r\n",
                without_length(&upstream_head)
            );
            client.write_all(head.as_bytes())?;
            client.write_all(body)?;
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            let zeros = vec![0u8; 64 << 10];
            // Until the client hangs up (or 8 GiB, should it never).
            for _ in 0..(8u64 << 30) / (64 << 10) {
                client.write_all(&zeros)?;
                sent.fetch_add(zeros.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        }
        Mischief::ShortBlobs if is_blob && ok => {
            let (upstream_head, body) = split_response(&response);
            let head = format!(
                "{}Connection: close\r\n\r\n",
                without_length(&upstream_head)
            );
            client.write_all(head.as_bytes())?;
            client.write_all(&body[..body.len() / 2])?;
            sent.fetch_add(body.len() as u64 / 2, Ordering::Relaxed);
            Ok(())
        }
        Mischief::LayerSizes(_) | Mischief::HugeManifests if is_manifest && ok => {
            let (upstream_head, body) = split_response(&response);
            let mut doc: serde_json::Value = serde_json::from_slice(body).expect("manifest json");
            if let Some(layers) = doc.get_mut("layers").and_then(|l| l.as_array_mut()) {
                for layer in layers {
                    if let Mischief::LayerSizes(size) = mischief {
                        layer["size"] = serde_json::Value::from(size);
                    }
                }
            }
            let body = if matches!(mischief, Mischief::HugeManifests) {
                let mut padded = body.to_vec();
                padded.resize(body.len() + (5 << 20), b' ');
                padded
            } else {
                serde_json::to_vec(&doc).expect("json")
            };
            let head = format!(
                "{}Content-Length: {}\r\nConnection: close\r\n\r\n",
                without_length(&upstream_head),
                body.len()
            );
            client.write_all(head.as_bytes())?;
            client.write_all(&body)
        }
        _ => client.write_all(&response),
    }
}

/// A response's head (status line and headers, without the blank line) and body.
fn split_response(response: &[u8]) -> (String, &[u8]) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    (
        String::from_utf8_lossy(&response[..end + 2]).into_owned(),
        &response[end + 4..],
    )
}

/// A response head without its `Content-Length`, `Connection` and `Transfer-Encoding`.
fn without_length(head: &str) -> String {
    head.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.is_empty()
                && !l.starts_with("content-length:")
                && !l.starts_with("connection:")
                && !l.starts_with("transfer-encoding:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// Waits until some upload under `data` has written bytes, or panics after `limit`.
pub(crate) fn wait_for_upload_bytes(data: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let found = Command::new("find")
            .arg(data)
            .args(["-path", "*_uploads*", "-name", "data", "-size", "+1k"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no upload started within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
