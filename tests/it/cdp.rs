//! A minimal DevTools-protocol client for headless Chromium over `--remote-debugging-pipe`
//! (NUL-separated JSON on file descriptors 3 and 4): navigate, run an expression, click,
//! pick a file for an upload, set the viewport, take a screenshot. A few dozen lines
//! instead of a CDP crate: chromiumoxide and headless_chrome each bring a large generated
//! protocol crate and a websocket stack, which this 2-core machine would compile for
//! the handful of commands these tests send.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one step may take before the test fails saying which.
const STEP: Duration = Duration::from_secs(60);

/// One headless Chromium with one page, driven over the pipe.
pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: Receiver<Value>,
    session: String,
    next_id: u64,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints, as pipe(2) wants.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe(2)");
    // SAFETY: pipe(2) succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium (its profile in `profile`) and opens one page.
    pub fn start(profile: &Path) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: tests/run installs Debian's `chromium` package \
             (apt-get install -y chromium)"
        );
        // Chromium reads commands on fd 3 and writes answers on fd 4.
        let (cmd_read, cmd_write) = pipe();
        let (ans_read, ans_write) = pipe();
        let (r3, w4) = (cmd_read.as_raw_fd(), ans_write.as_raw_fd());
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(r3, 3) < 0 || libc::dup2(w4, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_read);
        drop(ans_write);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::fs::File::from(ans_read);
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            loop {
                let mut buf = Vec::new();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: rx,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        self.next_id
    }

    /// Waits for the message `want` says, failing after [`STEP`] naming `what`.
    fn wait(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + STEP;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(v) if want(&v) => return v,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("chromium: no {what} within {STEP:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium exited while waiting for {what}")
                }
            }
        }
    }

    fn answer(&mut self, id: u64, method: &str) -> Value {
        let v = self.wait(method, |v| v["id"].as_u64() == Some(id));
        if let Some(e) = v.get("error") {
            panic!("chromium: {method} failed: {e}");
        }
        v["result"].clone()
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, None);
        self.answer(id, method)
    }

    /// One command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        let id = self.send(method, params, Some(&session));
        self.answer(id, method)
    }

    /// Runs `action` (an expression) and waits for the page it leads to to load.
    fn and_wait_for_load(&mut self, what: &str, action: impl FnOnce(&mut Self)) {
        action(self);
        self.wait(&format!("page load after {what}"), |v| {
            v["method"] == "Page.loadEventFired"
        });
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&mut self, url: &str) {
        let u = url.to_string();
        self.and_wait_for_load(url, |b| {
            let r = b.call("Page.navigate", json!({"url": u}));
            assert!(r.get("errorText").is_none(), "navigate to {u}: {r}");
        });
    }

    /// The value of a JavaScript expression on the page.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("`{expr}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Clicks the element `selector` names and waits for the page that follows.
    pub fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) throw new Error('no ' + {s}); e.click(); return true; }})()",
            s = serde_json::to_string(selector).unwrap()
        );
        self.and_wait_for_load(selector, |b| {
            b.eval(&expr);
        });
    }

    /// Sets the value of the input `selector` names.
    pub fn fill(&mut self, selector: &str, value: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) throw new Error('no ' + {s}); e.value = {v}; return true; }})()",
            s = serde_json::to_string(selector).unwrap(),
            v = serde_json::to_string(value).unwrap()
        );
        self.eval(&expr);
    }

    /// Chooses `file` in the file input `selector` names.
    pub fn choose_file(&mut self, selector: &str, file: &Path) {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": format!("document.querySelector({})", serde_json::to_string(selector).unwrap())}),
        );
        let object = r["result"]["objectId"]
            .as_str()
            .unwrap_or_else(|| panic!("no file input {selector}"))
            .to_string();
        self.call(
            "DOM.setFileInputFiles",
            json!({"files": [file.display().to_string()], "objectId": object}),
        );
    }

    /// The page's text.
    pub fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the element `selector` names exists.
    pub fn has(&mut self, selector: &str) -> bool {
        self.eval(&format!(
            "document.querySelector({}) !== null",
            serde_json::to_string(selector).unwrap()
        )) == json!(true)
    }

    /// Lays the page out `width` CSS pixels wide.
    pub fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// The page's whole width against the viewport's: more means horizontal scrolling.
    pub fn widths(&mut self) -> (u64, u64) {
        let v = self.eval("[document.documentElement.scrollWidth, window.innerWidth]");
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
