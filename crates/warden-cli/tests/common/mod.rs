//! Support shared by the CLI's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStderr, Command, Output, Stdio};

/// Runs the built `warden` binary with `args`, feeding it `stdin`.
pub fn warden(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may exit before reading stdin (e.g. a policy error): ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// One HTTP/1.1 exchange with `addr` (connection closed after it): the
/// status, the response headers (names lower-cased) and the body.
pub fn http_exchange(
    addr: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut req = format!(
        "{method} /mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("")[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A child process killed when the test ends, however it ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway started by [`listening`]: the process, its stderr (kept open so
/// it can go on logging) and the line saying where it listens.
pub struct Listening {
    /// The process, killed on drop.
    pub child: Killed,
    /// The rest of its stderr.
    pub stderr: BufReader<ChildStderr>,
    /// The `... listening on http://HOST:PORT/...` line.
    pub line: String,
}

impl Listening {
    /// `HOST:PORT` from the listening line.
    pub fn addr(&self) -> String {
        self.line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned()
    }
}

/// Spawns `cmd` with stderr piped and waits for its "listening on" line.
pub fn listening(cmd: &mut Command) -> Listening {
    let mut child = Killed(cmd.stderr(Stdio::piped()).spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "gateway exited");
    }
    Listening {
        child,
        stderr,
        line,
    }
}
