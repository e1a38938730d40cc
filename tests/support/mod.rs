//! Test harness: starts real components (the Bigtable emulator, PostgreSQL,
//! Redis) on free loopback ports, waits until they answer, and stops them by
//! the pid it started when the handle is dropped. A component that is not
//! installed fails the test with a message naming it and how to install it
//! (`scripts/install-deps.sh` installs all of them).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod bigquery;
pub mod evm;
pub mod rpc_peer;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Part of every secret the tests hand to Chronicle (passwords in URLs,
/// tokens, API keys): a log holding it has leaked one ([`assert_no_secret`]).
pub const SECRET_MARK: &str = "never-logged";

/// Fails when `log` holds a secret a test handed over.
pub fn assert_no_secret(log: &str) {
    if let Some(at) = log.find(SECRET_MARK) {
        let line = log[..at].rfind('\n').map_or(0, |n| n + 1);
        let end = log[at..].find('\n').map_or(log.len(), |n| at + n);
        panic!("a secret was logged: {}", &log[line..end]);
    }
}

/// How long a component may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 that was free a moment ago, and never handed out
/// before in this process: tests start servers in parallel, and two of them
/// on one port would answer for each other until one stops.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener.local_addr().expect("local address").port();
        let mut given = GIVEN.lock().expect("ports given");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A process the harness started; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
    /// The signal that asks this program to shut down fast.
    stop_signal: libc::c_int,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{name}: create log {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: failed to start {:?}: {e}", command.get_program()));
        Self { name, child, log, stop_signal: libc::SIGTERM }
    }

    /// Polls `ready` until it is true; panics with the component's log if the
    /// process exits or the time runs out.
    fn wait_until(&mut self, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Exited first: another process may be answering on its port.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready:\n{}", self.name, self.log_tail());
            }
            if ready() {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not become ready in {START_TIMEOUT:?}:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panics with a message that names the missing component and how to get it.
fn missing(component: &str, hint: &str) -> ! {
    panic!("{component} is not installed: {hint} (scripts/install-deps.sh installs every test component)")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn tcp_answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

// ---------------------------------------------------------------- Bigtable

/// Google's Bigtable emulator (`cbtemulator`), in memory.
pub struct BigtableEmulator {
    pub port: u16,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl BigtableEmulator {
    pub fn start() -> Self {
        let binary = find_cbtemulator();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = Process::spawn(
            "Bigtable emulator",
            Command::new(binary).args(["-host", "127.0.0.1", "-port", &port.to_string()]),
            dir.path().join("cbtemulator.log"),
        );
        process.wait_until(|| tcp_answers(port));
        Self { port, _process: process, _dir: dir }
    }

    /// The value for `BIGTABLE_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn find_cbtemulator() -> PathBuf {
    if let Some(path) = std::env::var_os("CBTEMULATOR") {
        return path.into();
    }
    if let Some(path) = on_path("cbtemulator") {
        return path;
    }
    let roots = ["/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk"];
    let home = std::env::var("HOME").map(|h| format!("{h}/google-cloud-sdk")).unwrap_or_default();
    roots
        .into_iter()
        .chain(std::iter::once(home.as_str()))
        .map(|root| Path::new(root).join("platform/bigtable-emulator/cbtemulator"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            missing(
                "the Bigtable emulator (cbtemulator)",
                "install google-cloud-cli with its bigtable emulator component, or set CBTEMULATOR=/path/to/cbtemulator",
            )
        })
}

/// The `cbt` CLI, pointed at the emulator, for checks of what was written.
pub fn cbt(emulator: &BigtableEmulator, project: &str, instance: &str, args: &[&str]) -> String {
    let binary = on_path("cbt").unwrap_or_else(|| missing("the cbt CLI", "install google-cloud-cli-cbt"));
    let output = Command::new(binary)
        .env("BIGTABLE_EMULATOR_HOST", emulator.host())
        .args(["-project", project, "-instance", instance])
        .args(args)
        .output()
        .expect("run cbt");
    assert!(output.status.success(), "cbt {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------- PostgreSQL

/// A throwaway PostgreSQL cluster in a temp dir, trust auth on loopback. It
/// can be stopped and started again on the same port and data.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    process: Option<Process>,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bindir();
        let dir = tempfile::tempdir().expect("temp dir");
        let user = unprivileged_user();
        if let Some((uid, gid)) = user {
            chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster dir to postgres");
        }
        let init = run_as(
            user,
            Command::new(bin.join("initdb"))
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
                .arg(dir.path().join("data")),
        )
        .output()
        .expect("run initdb");
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        let mut postgres = Self { port: free_port(), bin, user, process: None, dir };
        postgres.start_again();
        postgres
    }

    /// Starts the server (after [`stop`](Self::stop)) on the same port and data.
    pub fn start_again(&mut self) {
        let port = self.port.to_string();
        let mut process = Process::spawn(
            "PostgreSQL",
            run_as(
                self.user,
                Command::new(self.bin.join("postgres")).arg("-D").arg(self.dir.path().join("data")).args([
                    "-p",
                    &port,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    &format!("unix_socket_directories={}", self.dir.path().display()),
                    "-c",
                    "fsync=off",
                ]),
            ),
            self.dir.path().join("postgres.log"),
        );
        // SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients).
        process.stop_signal = libc::SIGINT;
        let isready = self.bin.join("pg_isready");
        process.wait_until(|| {
            Command::new(&isready).args(["-q", "-h", "127.0.0.1", "-p", &port]).status().is_ok_and(|s| s.success())
        });
        self.process = Some(process);
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// A `postgres://` URL for the `postgres` database. It carries a
    /// password (which `trust` authentication never asks for) so that every
    /// test handing it to Chronicle checks it is never logged.
    pub fn url(&self) -> String {
        format!("postgres://postgres:pg-password-{SECRET_MARK}@127.0.0.1:{}/postgres", self.port)
    }
}

fn run_as(user: Option<(u32, u32)>, command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA")
}

fn postgres_bindir() -> PathBuf {
    if let Some(initdb) = on_path("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return real.parent().expect("initdb has a parent dir").to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| missing("the PostgreSQL server", "apt-get install -y postgresql"))
}

/// PostgreSQL refuses to run as root: when we are root, run it as the
/// `postgres` system user that Debian's package creates.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
        .unwrap_or_else(|| missing("the postgres system user", "apt-get install -y postgresql creates it"));
    Some((entry[2].parse().expect("uid"), entry[3].parse().expect("gid")))
}

// ---------------------------------------------------------------- Redis

/// A Redis server with persistence off.
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A Redis that asks for a password (`requirepass`); its [`url`](Self::url) carries it.
    pub fn start_with_password() -> Self {
        Self::start_with(free_port(), Some(format!("redis-password-{SECRET_MARK}")))
    }

    /// A Redis on a given port (e.g. the one a stopped server used).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, None)
    }

    fn start_with(port: u16, password: Option<String>) -> Self {
        let binary = on_path("redis-server")
            .unwrap_or_else(|| missing("Redis (redis-server)", "apt-get install -y redis-server"));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = Process::spawn(
            "Redis",
            Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(password.iter().flat_map(|p| ["--requirepass", p.as_str()]))
                .arg("--dir")
                .arg(dir.path()),
            dir.path().join("redis.log"),
        );
        process.wait_until(|| redis_pong(port, password.as_deref()));
        Self { port, password, _process: process, _dir: dir }
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }
}

fn redis_pong(port: u16, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let (hello, expected) = match password {
        Some(password) => (format!("AUTH {password}\r\nPING\r\n"), "+OK\r\n+PONG\r\n"),
        None => ("PING\r\n".to_string(), "+PONG\r\n"),
    };
    let mut reply = vec![0u8; expected.len()];
    stream.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && stream.write_all(hello.as_bytes()).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply == expected.as_bytes()
}

// ---------------------------------------------------------------- VictoriaMetrics

/// VictoriaMetrics (Debian `victoria-metrics`): a server speaking the
/// InfluxDB v2 write API (`/api/v2/write`), read back with `/api/v1/export`.
pub struct VictoriaMetrics {
    pub port: u16,
    process: Option<Process>,
    dir: PathBuf,
}

impl VictoriaMetrics {
    /// Runs the shipped downsampling rules with `vmalert` over `from..=to`
    /// (RFC 3339), writing their samples back into this server.
    pub fn replay_rules(&self, rules: &std::path::Path, from: &str, to: &str) {
        let binary = on_path("vmalert")
            .unwrap_or_else(|| missing("vmalert (victoria-metrics)", "apt-get install -y victoria-metrics"));
        let output = Command::new(binary)
            .arg(format!("-rule={}", rules.display()))
            .arg(format!("-datasource.url={}", self.url()))
            .arg(format!("-remoteWrite.url={}", self.url()))
            .args(["-datasource.queryStep=0", "-replay.disableProgressBar", "-replay.rulesDelay=0s"])
            .arg(format!("-replay.timeFrom={from}"))
            .arg(format!("-replay.timeTo={to}"))
            .output()
            .expect("run vmalert");
        assert!(output.status.success(), "vmalert: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// A server on a free port keeping its data under `dir`.
    pub fn start(dir: &std::path::Path) -> Self {
        let mut server = Self { port: free_port(), process: None, dir: dir.to_path_buf() };
        server.start_again();
        server
    }

    /// Starts the server again on its port and data (after [`Self::stop`]).
    pub fn start_again(&mut self) {
        let binary = on_path("victoria-metrics")
            .unwrap_or_else(|| missing("VictoriaMetrics (victoria-metrics)", "apt-get install -y victoria-metrics"));
        let port = self.port;
        let mut process = Process::spawn(
            "VictoriaMetrics",
            Command::new(binary)
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", self.dir.join("data").display()))
                .arg("-search.latencyOffset=0s")
                // The recorded blocks are years old: keep every sample.
                .arg("-retentionPeriod=100y"),
            self.dir.join(format!(
                "victoria-metrics-{}.log",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            )),
        );
        process.wait_until(|| http_get(port, "/health").is_some_and(|body| body.trim() == "OK"));
        self.process = Some(process);
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The body of `GET http://127.0.0.1:PORT/PATH` when it answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_string())
}

/// What a worker run to completion logged and served: its exit, its log
/// (stderr) and its /metrics after the work, before it stopped.
pub struct ScrapedRun {
    pub success: bool,
    pub log: String,
    pub metrics: String,
}

/// Runs a `chronicle worker …` command with its metrics on a free port and a
/// linger (`--metrics-linger`): once it logs that its work is done, scrapes
/// /metrics as Prometheus would, then stops it with SIGTERM.
pub fn run_and_scrape(command: &mut Command) -> ScrapedRun {
    let port = free_port();
    let mut child = command
        .env("CHRONICLE_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("CHRONICLE_METRICS_LINGER", "120s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                log.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let metrics = loop {
        if log.lock().unwrap().contains("work done: serving the final metrics") {
            break http_get(port, "/metrics").expect("the lingering worker serves /metrics");
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the worker exited ({status}) before its work was done:\n{}", log.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "the worker never finished:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert_no_secret(&log);
    ScrapedRun { success: status.success(), log, metrics }
}

/// The value of one sample (`name{labels}` exactly as exposed) in a /metrics text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

// ---------------------------------------------------------------- test data

/// A file under `tests/data/`.
pub fn data_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative)
}

/// Fields a newer node prints that an older recording may lack; ours may
/// carry them when they hold nothing (null, empty).
const NEWER_FIELDS: &[&str] = &[
    "loadedAddresses",
    "stackHeight",
    "computeUnitsConsumed",
    "returnData",
    "costUnits",
    "numRewardPartitions",
    "commissionBps",
];

/// Nothing, or what a newer node prints by default (top-level instructions
/// carry `stackHeight: 1`).
fn is_empty_value(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Number(n) => n.as_u64() == Some(1),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_empty_value),
        _ => false,
    }
}

/// Asserts that `ours` says everything `source` says, field by field: every
/// field of the source is present with an equal value; a field only we
/// print must be one a newer node adds, and empty.
pub fn assert_json_covers(source: &serde_json::Value, ours: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (source, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                // Older nodes print `null` where newer ones leave the field out.
                if value.is_null() && !b.contains_key(key) {
                    continue;
                }
                let theirs =
                    b.get(key).unwrap_or_else(|| panic!("{path}.{key}: missing from our answer (source has {value})"));
                assert_json_covers(value, theirs, &format!("{path}.{key}"));
            }
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                assert!(
                    NEWER_FIELDS.contains(&key.as_str()) && is_empty_value(value),
                    "{path}.{key}: we print {value}, the source has no such field"
                );
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: {} items in the source, {} in ours", a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_json_covers(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{path}"),
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

// ---------------------------------------------------------------- real blocks and stores

/// The four recorded mainnet blocks that carry raw transactions, at their
/// real slots: 18144001 and 64800004 (protobuf), 100000000 and 154808473 (json).
pub fn real_blocks() -> Vec<(u64, solana_transaction_status::ConfirmedBlock)> {
    use prost::Message as _;
    let mut blocks = Vec::new();
    for (name, slot) in [("18144001.pb", 18_144_001u64), ("64800004.pb", 64_800_004)] {
        let bytes = std::fs::read(data_file(&format!("solana/{name}"))).expect("test data");
        let decoded =
            solana_storage_proto::convert::generated::ConfirmedBlock::decode(bytes.as_slice()).expect("protobuf");
        let block = chronicle::store::ledger::proto_to_block(decoded).expect("valid block");
        blocks.push((slot, block));
    }
    for (name, slot) in [("block_100000000_json.json", 100_000_000u64), ("block_154808473_v0_json.json", 154_808_473)] {
        let path = data_file(&format!("solana/{name}"));
        blocks
            .push((slot, chronicle::chain::solana::response::read_block_file(&path, Some(slot)).expect("test data").1));
    }
    blocks
}

/// What the stock-client tests (`js_client.rs`, `python_client.rs`) serve
/// and expect: the recorded slot-100000000 block stored alone in an embedded
/// store under `dir`, and the values its recorded node response holds (the
/// file the client scripts read).
pub async fn client_fixture(
    dir: &std::path::Path,
) -> (std::sync::Arc<chronicle::store::LedgerStore>, std::path::PathBuf) {
    use chronicle::store::BlockStore;
    let cells = chronicle::store::embedded::EmbeddedCells::open(&dir.join("ledger")).expect("embedded store");
    let store = std::sync::Arc::new(chronicle::store::LedgerStore::new(std::sync::Arc::new(cells)));
    let slot = 100_000_000u64;
    let path = data_file("solana/block_100000000_json.json");
    let (_, block) = chronicle::chain::solana::response::read_block_file(&path, Some(slot)).expect("test data");
    store.write_block(slot, &block, &[]).await.expect("write the block");
    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let txs = recorded["transactions"].as_array().unwrap();
    let first_signature = |t: &serde_json::Value| t["transaction"]["signatures"][0].as_str().unwrap().to_string();
    let signatures: Vec<String> = txs.iter().map(first_signature).collect();
    // The first transaction's fee payer, and every transaction naming it, newest first.
    let address = txs[0]["transaction"]["message"]["accountKeys"][0].as_str().unwrap();
    let names = |t: &&serde_json::Value| {
        t["transaction"]["message"]["accountKeys"].as_array().unwrap().iter().any(|k| k == address)
    };
    let address_signatures: Vec<String> = txs.iter().filter(names).map(first_signature).rev().collect();
    let expected = serde_json::json!({
        "slot": slot,
        "blockhash": recorded["blockhash"],
        "parentSlot": recorded["parentSlot"],
        "blockTime": recorded["blockTime"],
        "blockHeight": recorded["blockHeight"],
        "signatures": signatures,
        "firstFee": txs[0]["meta"]["fee"],
        "address": address,
        "addressSignatures": address_signatures,
        "firstAvailable": slot,
        "genesisHash": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
    });
    let expected_path = dir.join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    (store, expected_path)
}

/// Early-history blocks at slots 10000-10003: the real mainnet slot-10000
/// block (every transaction without status metadata, `blockHeight` and
/// `blockTime` null, no rewards) and three blocks DERIVED from real ones: at
/// 10001 the real slot-100000000 block with the metadata of every other
/// transaction removed (a mixed block), at 10002 the slot-10000 header with no
/// transactions, at 10003 the real slot-18144001 block with a
/// `previousBlockhash` of all ones (how a node shows a block whose parent is
/// missing from its ledger).
pub fn early_blocks() -> Vec<(u64, solana_transaction_status::ConfirmedBlock)> {
    use solana_transaction_status::{ConfirmedBlock, TransactionWithStatusMeta};
    let read = |name: &str, slot: u64| {
        chronicle::chain::solana::response::read_block_file(&data_file(name), Some(slot)).expect("test data").1
    };
    let early = read("solana/block_10000_meta_null_json.json", 10_000);
    let mut mixed = read("solana/block_100000000_json.json", 100_000_000);
    for tx in mixed.transactions.iter_mut().skip(1).step_by(2) {
        let legacy = tx.get_transaction().into_legacy_transaction().expect("the fixture's transactions are legacy");
        *tx = TransactionWithStatusMeta::MissingMetadata(legacy);
    }
    let empty = ConfirmedBlock { transactions: Vec::new(), ..early.clone() };
    let orphaned =
        ConfirmedBlock { previous_blockhash: "11111111111111111111111111111111".into(), ..real_blocks().remove(0).1 };
    vec![(10_000, early), (10_001, mixed), (10_002, empty), (10_003, orphaned)]
}

/// The real blocks replayed at `count` consecutive slots from `first` (block
/// bodies unchanged), for tests and benchmarks that need more slots than were recorded.
pub fn replayed(first: u64, count: u64) -> std::collections::BTreeMap<u64, solana_transaction_status::ConfirmedBlock> {
    let real: Vec<_> = real_blocks().into_iter().map(|(_, b)| b).collect();
    (0..count).map(|i| (first + i, real[i as usize % real.len()].clone())).collect()
}

/// A mainnet-size block (benchmarks): `count` of the recorded transactions
/// `real`, cycled, each copy's first signature made unique to `slot` and its
/// position (so every transaction has its own `tx` row, as on mainnet); the
/// header is `template`'s with the parent `slot - 1`. DERIVED data: say so where used.
pub fn mainnet_size_block(
    slot: u64,
    template: &solana_transaction_status::ConfirmedBlock,
    real: &[solana_transaction_status::TransactionWithStatusMeta],
    count: usize,
) -> solana_transaction_status::ConfirmedBlock {
    use solana_transaction_status::TransactionWithStatusMeta;
    let transactions = (0..count)
        .map(|i| {
            let mut tx = real[i % real.len()].clone();
            let signature = match &mut tx {
                TransactionWithStatusMeta::Complete(tx) => &mut tx.transaction.signatures[0],
                TransactionWithStatusMeta::MissingMetadata(tx) => &mut tx.signatures[0],
            };
            let mut bytes: [u8; 64] = signature.as_ref().try_into().unwrap();
            bytes[..8].copy_from_slice(&slot.to_be_bytes());
            bytes[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            *signature = solana_signature::Signature::from(bytes);
            tx
        })
        .collect();
    solana_transaction_status::ConfirmedBlock { transactions, parent_slot: slot.saturating_sub(1), ..template.clone() }
}

/// `chronicle serve`'s router on a free loopback port, until the token is cancelled.
pub async fn serve_on_free_port(
    store: std::sync::Arc<dyn chronicle::store::BlockStore>,
    config: chronicle::serve::ServeConfig,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chronicle::serve::router(store, config).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .unwrap();
    });
    (addr, stop)
}

/// Sends SIGTERM to a worker and waits for it; its exit and its log.
pub async fn terminate(child: tokio::process::Child) -> (std::process::ExitStatus, String) {
    // SAFETY: kill(2) on a process the test spawned.
    unsafe { libc::kill(child.id().expect("running") as i32, libc::SIGTERM) };
    let wait = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output());
    let output = wait.await.expect("the worker stopped in time").unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_no_secret(&log);
    (output.status, log)
}

/// A ledger on the emulator, tables created.
pub async fn bigtable_ledger(
    emulator: &BigtableEmulator,
    project: &str,
    instance: &str,
) -> std::sync::Arc<chronicle::store::LedgerStore> {
    use chronicle::store::cells::CellStore;
    let cells = chronicle::store::bigtable::BigtableCells::connect(chronicle::store::bigtable::BigtableConfig {
        project: project.into(),
        instance: instance.into(),
        app_profile: "default".into(),
        emulator_host: Some(emulator.host()),
        credentials_file: None,
        timeout: Duration::from_secs(30),
    })
    .await
    .expect("connect to the Bigtable emulator");
    cells.ensure_tables(&chronicle::store::ledger::tables::ALL).await.expect("create tables");
    std::sync::Arc::new(chronicle::store::LedgerStore::new(std::sync::Arc::new(cells)))
}

/// The raw write ceiling of a store's engine: `encoded` blocks' cells written
/// straight to it (indexes, then `blocks`), `concurrency` blocks at a time, then
/// a sync. Returns the time it took.
pub async fn raw_write(
    store: &chronicle::store::LedgerStore,
    encoded: Vec<chronicle::store::ledger::BlockCells>,
    concurrency: usize,
) -> Duration {
    use futures::StreamExt;
    let cells = store.cells().clone();
    let start = Instant::now();
    futures::stream::iter(encoded)
        .map(|block| {
            let cells = cells.clone();
            async move {
                tokio::spawn(async move {
                    cells.write(block.indexes).await.unwrap();
                    cells.write(vec![block.block]).await.unwrap();
                })
                .await
                .unwrap()
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    cells.sync().await.unwrap();
    start.elapsed()
}

/// What pyarrow reads in a Parquet file: its column names and rows as JSON.
pub fn pyarrow_read(file: &std::path::Path) -> serde_json::Value {
    let script = "import json, sys, pyarrow.parquet as pq\n\
        t = pq.read_table(sys.argv[1])\n\
        print(json.dumps({'columns': t.schema.names, 'types': [str(f.type) for f in t.schema], 'rows': t.to_pylist()}, default=str))";
    let output = std::process::Command::new("python3").args(["-c", script]).arg(file).output().expect("python3");
    assert!(output.status.success(), "pyarrow: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every row of every table of agave's layout, keys and cells, in key order.
pub async fn dump(
    cells: &std::sync::Arc<dyn chronicle::store::cells::CellStore>,
) -> Vec<(chronicle::store::cells::Table, chronicle::store::cells::Row)> {
    dump_tables(cells, &chronicle::store::ledger::tables::ALL).await
}

/// Every row of `tables`, table by table in key order.
pub async fn dump_tables(
    cells: &std::sync::Arc<dyn chronicle::store::cells::CellStore>,
    tables: &[chronicle::store::cells::Table],
) -> Vec<(chronicle::store::cells::Table, chronicle::store::cells::Row)> {
    use chronicle::store::cells::KeyRange;
    let mut rows = Vec::new();
    for &table in tables {
        let all = cells.scan(table, KeyRange { start: String::new(), end: None }, usize::MAX, false).await.unwrap();
        rows.extend(all.into_iter().map(|r| (table, r)));
    }
    rows
}

/// Installs the client's npm dependencies once, in a cache outside the clone.
pub fn node_modules() -> PathBuf {
    let cache = std::env::var_os("CHRONICLE_NPM_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache/chronicle/js")
    });
    std::fs::create_dir_all(&cache).unwrap();
    let manifest = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/package.json")).unwrap();
    let installed = std::fs::read(cache.join("package.json")).ok();
    let present =
        ["@solana/web3.js", "@solana/kit", "@ipld/car", "@ipld/dag-cbor", "viem", "solc", "@foundry-rs/anvil"]
            .iter()
            .all(|m| cache.join("node_modules").join(m).exists());
    if installed.as_deref() != Some(&manifest[..]) || !present {
        std::fs::write(cache.join("package.json"), &manifest).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&cache)
            .status()
            .unwrap_or_else(|e| panic!("npm is not installed ({e}): apt-get install -y nodejs npm"));
        assert!(status.success(), "npm install of tests/js/package.json failed");
    }
    cache.join("node_modules")
}
