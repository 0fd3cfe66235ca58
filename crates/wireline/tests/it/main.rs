//! End-to-end tests of the `wireline` binary: commands, exit codes, the server, shutdown, and
//! that no secret value ever reaches the output.

mod cli;
mod crash;
mod demo;
mod encryption;
mod events;
mod hooks;
mod keys;
mod plan;
mod poll;
mod scenarios;
mod sdk;
mod secrets;
mod server;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `wireline` binary under test, with a clean environment for config and logs.
pub fn wireline() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wireline"));
    command
        .env_remove("WIRELINE_CONFIG")
        .env_remove("WIRELINE_LOG")
        .env_remove("WIRELINE_LOG_FORMAT");
    command
}

/// Runs `wireline ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    wireline().args(args).output().expect("wireline runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `wireline run`, its address read from its JSON log.
pub struct Server {
    pub child: Child,
    pub address: String,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Server {
    pub fn start(config: &Path, envs: &[(&str, &str)]) -> Server {
        let mut child = wireline()
            .args(["--log-format", "json", "run", "-c"])
            .arg(config)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wireline run starts");
        let (sender, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        // Only the reader threads hold senders: a server that exits disconnects the channel,
        // so a failed start is reported at once instead of after the timeout.
        drop(sender);
        let mut server = Server {
            child,
            address: String::new(),
            lines,
            log: Vec::new(),
        };
        let line = server.wait_for_log("wireline listening");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        server.address = parsed["address"]
            .as_str()
            .expect("address field")
            .to_owned();
        server
    }

    /// Waits (bounded) for a log line containing `needle`; returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends SIGTERM and waits for exit; returns the exit code and all output.
    pub fn terminate(self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.terminate_after_signal()
    }

    /// Waits for a process already signalled to exit; returns the exit code and all output.
    pub fn terminate_after_signal(mut self) -> (Option<i32>, String) {
        let exit = self.child.wait().expect("wait");
        // The reader threads end at EOF; drain what they read.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        (exit.code(), self.log.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `app` on a free loopback port until the test ends; returns `http://ADDRESS`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Waits (bounded) until `probe` returns something.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
