//! A minimal Chrome DevTools Protocol client over tokio-tungstenite, driving Debian's
//! headless `chromium` for the web page test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::support::PATIENCE;

/// Where Debian's package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless chromium, killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    conn: Arc<Connection>,
}

struct Connection {
    sink: Mutex<
        futures::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
            Message,
        >,
    >,
    next_id: AtomicU64,
    waiting: std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Value>>>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Launches chromium; fails with a clear message when it is not installed.
    pub async fn launch() -> Self {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the web page test needs Debian's chromium \
             (apt-get install -y chromium; scripts/test.sh installs it)"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        // chromium prints "DevTools listening on ws://..." once the debugging port is open;
        // the thread keeps draining stderr so chromium never blocks on a full pipe.
        let (found, url_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(url) = line.split("DevTools listening on ").nth(1) {
                    sent = true;
                    let _ = found.send(Ok(url.trim().to_owned()));
                } else if !sent {
                    seen.push(line);
                }
            }
            if !sent {
                let _ = found.send(Err(seen.join("\n")));
            }
        });
        let ws_url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(PATIENCE))
            .await
            .unwrap()
            .expect("chromium did not open its DevTools port in time")
            .unwrap_or_else(|log| panic!("chromium exited before opening DevTools:\n{log}"));
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("DevTools websocket");
        let (sink, mut stream) = ws.split();
        let conn = Arc::new(Connection {
            sink: Mutex::new(sink),
            next_id: AtomicU64::new(1),
            waiting: Default::default(),
        });
        let reader = conn.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = value["id"].as_u64()
                    && let Some(tx) = reader.waiting.lock().unwrap().remove(&id)
                {
                    let _ = tx.send(value);
                }
            }
        });
        Self {
            child,
            _profile: profile,
            conn,
        }
    }

    /// Sends a command (to a page session when given) and returns its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let reply = self.call_raw(session, method, params).await;
        assert!(
            reply.get("error").is_none(),
            "{method} failed: {}",
            reply["error"]
        );
        reply["result"].clone()
    }

    /// Sends a command and returns the whole reply (result or error).
    pub async fn call_raw(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.conn.waiting.lock().unwrap().insert(id, tx);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        self.conn
            .sink
            .lock()
            .await
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("DevTools send");
        tokio::time::timeout(PATIENCE, rx)
            .await
            .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
            .expect("DevTools connection open")
    }

    /// Opens a new tab at `url` and returns its page.
    pub async fn open(self: &Arc<Self>, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        let page = Page {
            browser: self.clone(),
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        page.call("Runtime.enable", json!({})).await;
        page.wait_until("document.readyState === 'complete' && !!document.getElementById('ask')")
            .await;
        page
    }
}

/// One tab.
pub struct Page {
    browser: Arc<Browser>,
    session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value. A navigation
    /// that replaces the document under the call is waited out and the call repeated.
    pub async fn eval(&self, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let mut attempts = 0;
        let result = loop {
            let reply = self
                .browser
                .call_raw(Some(&self.session), "Runtime.evaluate", params.clone())
                .await;
            let Some(error) = reply.get("error") else {
                break reply["result"].clone();
            };
            let navigating = error.to_string().contains("context");
            attempts += 1;
            assert!(
                navigating && attempts < 100,
                "Runtime.evaluate failed: {error}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Waits (inside the page, re-checking on every DOM change) until `condition` is true.
    pub async fn wait_until(&self, condition: &str) {
        let script = format!(
            "new Promise((resolve) => {{
               const check = () => {{ try {{ return !!({condition}); }} catch (_) {{ return false; }} }};
               if (check()) return resolve(true);
               const obs = new MutationObserver(() => {{ if (check()) {{ obs.disconnect(); clearInterval(t); resolve(true); }} }});
               obs.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});
               const t = setInterval(() => {{ if (check()) {{ obs.disconnect(); clearInterval(t); resolve(true); }} }}, 200);
             }})"
        );
        let waited = tokio::time::timeout(PATIENCE, self.eval(&script)).await;
        if waited.is_err() {
            let body = self
                .eval("document.body ? document.body.innerText : ''")
                .await;
            panic!("the page never satisfied {condition}; it shows:\n{body}");
        }
    }

    /// The text of the first element matching `selector` ("" when none).
    pub async fn text(&self, selector: &str) -> String {
        let expr = format!(
            "(document.querySelector({sel}) || {{textContent: ''}}).textContent",
            sel = serde_json::to_string(selector).unwrap()
        );
        self.eval(&expr).await.as_str().unwrap_or("").to_owned()
    }
}
