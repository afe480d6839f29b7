//! A real browser for tests of what people look at: headless Chromium opens a page from disk, and gives back the
//! DOM it built (`--dump-dom`) or a screenshot (`--screenshot`).
//!
//! Reading the DOM *after* the browser parsed the page checks what a user would get (an unclosed tag or a stray
//! `<` shows there, not in a string search of the file). Chromium is found on the `PATH`, installed with
//! `apt-get` when the test runs as root on Debian, and otherwise absent: [`Chromium::find_or_install`] then says
//! why on stderr and the test skips.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// Names the browser goes by: Debian's package, other distributions', Google's build.
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];
/// Longest a page may take to load and render: a static file opens in a second or two even on a loaded machine;
/// past this the browser is hung, and is killed rather than left to stall the test run.
const TIMEOUT: Duration = Duration::from_secs(90);

/// A headless Chromium.
#[derive(Debug, Clone)]
pub struct Chromium {
    exe: PathBuf,
}

impl Chromium {
    /// Chromium, installed first if missing and possible (root, `apt-get`); `None`, with the reason printed, when
    /// there is none. The install is tried once per test process.
    pub fn find_or_install() -> Option<Self> {
        static FOUND: OnceLock<Option<Chromium>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                if let Some(found) = Self::find() {
                    return Some(found);
                }
                match install() {
                    Ok(()) => Self::find(),
                    Err(e) => {
                        crate::skip::missing_tool(format_args!("no headless Chromium on this machine ({e:#})"));
                        None
                    }
                }
            })
            .clone()
    }

    /// Chromium on the `PATH`, if it starts.
    pub fn find() -> Option<Self> {
        NAMES.iter().find_map(|name| {
            let ok = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
            ok.then(|| Self { exe: PathBuf::from(name) })
        })
    }

    /// The DOM the browser built from `page`, serialised back as HTML.
    pub fn dump_dom(&self, page: &Path) -> anyhow::Result<String> {
        let output = self.run(page, &["--dump-dom"])?;
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// A PNG of `page` as a `width` × `height` window shows it (taller than the screen: the whole report).
    pub fn screenshot(&self, page: &Path, png: &Path, (width, height): (u32, u32)) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(png);
        self.run(page, &[&format!("--screenshot={}", png.display()), &format!("--window-size={width},{height}")])?;
        let written = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
        if written == 0 {
            bail!("chromium wrote no screenshot at {}", png.display());
        }
        Ok(())
    }

    /// Runs the browser on `page` with `args`, in a profile of its own (parallel tests never share one), and
    /// returns its stdout.
    fn run(&self, page: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let page = page.canonicalize().with_context(|| format!("no page at {}", page.display()))?;
        let profile = std::env::temp_dir().join(format!(
            "offload-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut child = Command::new(&self.exe)
            // Headless, as root in containers (no sandbox then), without a GPU, and without calling home.
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let mut stdout = child.stdout.take().context("chromium's stdout")?;
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
            out
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                bail!("chromium did not finish with {} within {TIMEOUT:?}", page.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = reader.join().unwrap_or_default();
        let _ = std::fs::remove_dir_all(&profile);
        if !status.success() {
            bail!("chromium exited with {status} on {}", page.display());
        }
        Ok(out)
    }
}

/// Numbers each browser profile directory within this process.
static PROFILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Debian's `chromium` package (see [`crate::apt`]).
fn install() -> anyhow::Result<()> {
    crate::apt::install("chromium", "Chromium")
}
