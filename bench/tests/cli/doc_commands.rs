//! Every `offload-bench` command line the user pages show (`README.md`, `docs/*.md`, the crates' READMEs) parses
//! with the real command line: each flag exists, each value parses, each subcommand is there.
//!
//! Parsed, not run: [`offload_bench::Cli`] is the library the executable's `main` calls, so
//! `Cli::try_parse_from` here is exactly the binary's own parse, value parsers included, without starting load
//! tests or servers. (Running each command with `--help` appended would stop at the first `--help` and never
//! parse a value; a hidden check mode in the binary would be a flag users can see in the source and nothing
//! else needs.) What a command does once parsed (a combination refused at start-up, a file it reads) is the other
//! CLI tests' subject. A command the reader of [`offload_testkit::pages`] cannot know in full (a variable or
//! placeholder with no value in its table) is printed with the reason, and counted: never passed in silence.

use std::path::Path;

use clap::{Parser, error::ErrorKind};
use offload_testkit::pages::{
    self,
    commands::{Program, check, commands},
};

#[test]
fn every_offload_bench_command_on_the_pages_parses() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pages = pages::user_pages(&workspace).expect("read the user pages");
    let bench = commands(&pages).into_iter().filter(|c| c.program == Program::Bench);
    let checked = check(bench, |_, argv| match offload_bench::Cli::try_parse_from(argv) {
        Err(e) if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Err(e.to_string()),
        _ => Ok(()),
    });
    checked.print("offload-bench command lines");
    assert!(
        checked.wrong.is_empty(),
        "offload-bench commands on the pages that its command line refuses:\n{}",
        checked.wrong.join("\n")
    );
    // The pages show a dozen and more; far fewer means the reader stopped seeing them.
    let parsed = checked.parsed.len();
    assert!(
        parsed >= 10,
        "only {parsed} offload-bench command lines found on the pages: is the page reader still right?"
    );
}

/// The parse this check relies on refuses what the binary refuses before it runs anything: an unknown flag, a value
/// of the wrong type, and a misspelt name among `--scenarios` or `--waits` (checked by clap, not by the run).
#[test]
fn the_parse_refuses_unknown_flags_and_values() {
    for argv in [
        &["offload-bench", "stall", "--target", "127.0.0.1:1", "--call", "a.B/C", "--no-such-flag"][..],
        &["offload-bench", "load", "--insecure", "-n", "many", "127.0.0.1:1"],
        &["offload-bench", "reliability", "--scenarios", "overload,overlaod"],
        &["offload-bench", "compare", "--waits", "async,bloking"],
    ] {
        let error = offload_bench::Cli::try_parse_from(argv).expect_err(&argv.join(" "));
        assert!(
            matches!(error.kind(), ErrorKind::UnknownArgument | ErrorKind::InvalidValue | ErrorKind::ValueValidation),
            "{}: {error}",
            argv.join(" ")
        );
    }
    for argv in [
        &["offload-bench", "reliability", "--scenarios", "overload,soak"][..],
        &["offload-bench", "compare", "--waits", "none"],
        &["offload-bench", "compare", "--waits", "async,spawn-blocking"],
    ] {
        offload_bench::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    }
}
