//! The user pages (`README.md`, `docs/*.md`, the crates' READMEs; not `docs/log/` nor `docs/decisions/`) stay true
//! to the tree and to the servers' command lines:
//!
//! - every relative link points at a file or directory that exists, and its `#anchor` at a heading of the page it
//!   names, by GitHub's rules ([`offload_testkit::pages::slug`]);
//! - every `offload-compute` and `offload-gateway` command line they show (in a shell block, or a code span that is
//!   a whole command line; `cargo run -p … -- ARGS` too) parses with the server's own `Config`: each flag exists,
//!   each value parses. What a parsed configuration is then refused for at start-up is `compute_cli`'s and
//!   `gateway_cli`'s subject. `offload-bench`'s commands are parsed by the bench crate's own test
//!   (`bench/tests/cli/doc_commands.rs`): tests here depend on the services, never on a tool.
//!
//! A command the page reader cannot know in full is printed with the reason, never passed in silence.

use std::path::{Path, PathBuf};

use clap::{Parser, error::ErrorKind};
use offload_testkit::pages::{
    self, Page,
    commands::{Program, check, commands},
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn user_pages() -> Vec<Page> {
    let pages = pages::user_pages(&workspace()).expect("read the user pages");
    assert!(pages.len() >= 10, "only {} user pages: is the layout still README.md, docs/*.md?", pages.len());
    pages
}

#[test]
fn every_relative_link_reaches_its_file_and_heading() {
    let pages = user_pages();
    let (mut checked, mut broken) = (0, Vec::new());
    for page in &pages {
        for link in page.links() {
            let target = link.target.as_str();
            let is_external = target.split_once(':').is_some_and(|(scheme, _)| {
                !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            });
            if is_external || target.starts_with("//") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').map_or((target, None), |(p, a)| (p, Some(a)));
            let dest = if path.is_empty() {
                page.path.clone()
            } else if let Some(from_root) = path.strip_prefix('/') {
                workspace().join(from_root)
            } else {
                page.path.parent().expect("a page is in a directory").join(path)
            };
            let place = format!("{}:{}: {target}", page.name, link.line);
            if !dest.exists() {
                broken.push(format!("{place}: no such file"));
                continue;
            }
            // Anchors into source files are GitHub's line numbers (`#L10`), not headings.
            let Some(anchor) = anchor.filter(|_| dest.extension().is_some_and(|e| e == "md")) else { continue };
            let text = std::fs::read_to_string(&dest).expect("read the linked page");
            let linked = Page { name: String::new(), path: dest, text };
            if !linked.anchors().iter().any(|a| a == anchor) {
                broken.push(format!("{place}: no heading with that anchor"));
            }
        }
    }
    println!("{} pages, {checked} relative links checked", pages.len());
    assert!(broken.is_empty(), "broken links on the user pages:\n{}", broken.join("\n"));
    assert!(checked >= 30, "only {checked} relative links found: is the page reader still right?");
}

#[test]
fn every_server_command_on_the_pages_parses_with_its_config() {
    let servers =
        commands(&user_pages()).into_iter().filter(|c| matches!(c.program, Program::Compute | Program::Gateway));
    let checked = check(servers, |program, argv| {
        let parsed = match program {
            Program::Compute => offload_compute::Config::try_parse_from(argv).map(drop),
            _ => offload_gateway::Config::try_parse_from(argv).map(drop),
        };
        match parsed {
            Err(e) if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Err(e.to_string()),
            _ => Ok(()),
        }
    });
    checked.print("server command lines");
    assert!(
        checked.wrong.is_empty(),
        "server commands on the pages that their Config refuses:\n{}",
        checked.wrong.join("\n")
    );
    let parsed = checked.parsed.len();
    assert!(parsed >= 6, "only {parsed} server command lines found on the pages: is the page reader still right?");
}
