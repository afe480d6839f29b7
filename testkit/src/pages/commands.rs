//! The command lines the pages show that run one of offload's binaries, split into the arguments the binary would
//! get, so a test can hand them to the binary's own clap definition.
//!
//! Read are the lines of code blocks tagged as shell (`sh`, `bash`, `shell`, `console`) or not tagged at all, and
//! inline code spans that are a whole command line (they start with the binary or `cargo run`, and pass it a flag
//! or come from `cargo run`): a span such as `offload-bench load` names a command, it does not run one.
//!
//! The shell is read as far as the pages use it: `\` line continuations, quotes and escapes, `# comments`, pipes,
//! lists (`&&`, `||`, `;`, `&`) and redirections (the offload command of a pipeline is the one kept), environment
//! assignments before the command (dropped; one of offload's own `OFFLOAD_…` leaves the command unchecked, with the
//! reason), `cargo run [--release] -p BIN -- ARGS`, and a synopsis's optional parts
//! (`[--rps 200]`, `[--probe health|METHOD]`: the first alternative). `$VAR`s and `<placeholder>`s take a plausible
//! value from [`PLACEHOLDERS`](super::shell::PLACEHOLDERS); a command with one not there is returned unchecked with
//! the reason.

use super::{
    CodeLine, Page,
    shell::{Word, split},
};

/// The binaries whose command lines are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Compute,
    Gateway,
    Bench,
}

impl Program {
    pub const fn binary(self) -> &'static str {
        match self {
            Program::Compute => "offload-compute",
            Program::Gateway => "offload-gateway",
            Program::Bench => "offload-bench",
        }
    }

    fn named(name: &str) -> Option<Program> {
        [Program::Compute, Program::Gateway, Program::Bench].into_iter().find(|p| p.binary() == name)
    }
}

/// One command line of a page that runs an offload binary.
#[derive(Debug)]
pub struct DocCommand {
    /// `page:line`, as a failure names it.
    pub place: String,
    /// The line as the page shows it (continuations joined).
    pub text: String,
    pub program: Program,
    /// The arguments after the program name, or why they cannot be known.
    pub args: Result<Vec<String>, String>,
}

/// The pages' command lines sorted by what their program's own parse made of them (see [`check`]).
#[derive(Debug, Default)]
pub struct Checked {
    /// `page:line` of each line that parsed.
    pub parsed: Vec<String>,
    /// Lines that could not be known in full, each with why.
    pub unchecked: Vec<String>,
    /// Lines the parse refused, each with its error.
    pub wrong: Vec<String>,
}

impl Checked {
    /// Prints the lines parsed and those not checked, as `what` ("server command lines").
    pub fn print(&self, what: &str) {
        println!("{} {what} parsed: {}", self.parsed.len(), self.parsed.join(", "));
        println!("{} not checked:", self.unchecked.len());
        for line in &self.unchecked {
            println!("  {line}");
        }
    }
}

/// Runs `parse` (the program's own parse of its argv, program name first) on each command line whose arguments are
/// known; `Err` is the parse's refusal, already worded.
pub fn check(
    commands: impl IntoIterator<Item = DocCommand>,
    mut parse: impl FnMut(Program, Vec<&str>) -> Result<(), String>,
) -> Checked {
    let mut checked = Checked::default();
    for command in commands {
        let args = match &command.args {
            Ok(args) => args,
            Err(why) => {
                checked.unchecked.push(format!("{}: {} (not checked: {why})", command.place, command.text));
                continue;
            }
        };
        let argv = std::iter::once(command.program.binary()).chain(args.iter().map(String::as_str)).collect();
        match parse(command.program, argv) {
            Ok(()) => checked.parsed.push(command.place),
            Err(e) => checked.wrong.push(format!("{}: {}\n  {}", command.place, command.text, e.trim())),
        }
    }
    checked
}

/// Every command line of `pages` that runs `offload-compute`, `offload-gateway` or `offload-bench`.
pub fn commands(pages: &[Page]) -> Vec<DocCommand> {
    let mut found = Vec::new();
    for page in pages {
        // A line ending in `\` and the lines it continues: (first line, text so far, last line).
        let mut pending: Option<(usize, String, usize)> = None;
        for CodeLine { line, info, text } in page.code_lines() {
            // A block that ends in a continuation.
            if let Some((first, joined, _)) = pending.take_if(|(_, _, last)| *last + 1 != line) {
                found.extend(read(page, first, &joined, false));
            }
            match info.as_deref() {
                None => found.extend(read(page, line, &text, true)),
                Some("" | "sh" | "bash" | "shell" | "console") => {
                    let (first, mut joined, _) = pending.take().unwrap_or((line, String::new(), line));
                    match text.trim_end().strip_suffix('\\') {
                        Some(head) => {
                            joined.push_str(head);
                            pending = Some((first, joined, line));
                        }
                        None => {
                            joined.push_str(&text);
                            found.extend(read(page, first, &joined, false));
                        }
                    }
                }
                Some(_) => {}
            }
        }
        if let Some((first, joined, _)) = pending {
            found.extend(read(page, first, &joined, false));
        }
    }
    found
}

fn read(page: &Page, line: usize, text: &str, inline: bool) -> Vec<DocCommand> {
    let place = format!("{}:{line}", page.name);
    let text = text.trim().trim_start_matches("$ ").to_string();
    if ![Program::Compute, Program::Gateway, Program::Bench].iter().any(|p| text.contains(p.binary())) {
        return Vec::new();
    }
    let simple = match split(&text) {
        Ok(simple) => simple,
        Err(why) => {
            // A line that names a binary but is no shell (a log line in an untagged block) runs nothing.
            let program = text.split_whitespace().find_map(invoked);
            return match program {
                Some(program) if !inline => vec![DocCommand { place, text, program, args: Err(why) }],
                _ => Vec::new(),
            };
        }
    };
    let mut found = Vec::new();
    for words in simple {
        // Environment assignments before the command are the environment's, not its arguments; one of offload's
        // own variables would be a setting this reader does not parse, so it says so.
        let assigned = words.iter().take_while(|w| is_assignment(&w.text)).count();
        let offload_env = words[..assigned].iter().find(|w| w.text.starts_with("OFFLOAD_"));
        let words: Vec<&Word> = words[assigned..].iter().collect();
        let Some((program, args, cargo)) = program_and_args(&words, inline) else { continue };
        if inline && !cargo && !args.iter().any(|w| w.text.starts_with('-')) {
            continue;
        }
        let unresolved = args.iter().find_map(|w| w.unresolved.clone()).or_else(|| {
            offload_env.map(|w| format!("{} sets a setting through the environment, which is not parsed here", w.text))
        });
        let args = match unresolved {
            Some(why) => Err(why),
            None => Ok(args.iter().map(|w| w.text.clone()).collect()),
        };
        found.push(DocCommand { place: place.clone(), text: text.clone(), program, args });
    }
    found
}

/// The program a word runs, if it is one of ours (`offload-bench`, `target/release/offload-bench`, `$R/…`).
fn invoked(word: &str) -> Option<Program> {
    Program::named(word.rsplit('/').next().unwrap_or(word))
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) && !name.starts_with('-')
    })
}

/// The offload program of a simple command and its arguments; `true` when run through `cargo run`. A span must
/// start with it; a block line may run it under another (`valgrind … target/release/offload-compute …`).
fn program_and_args<'a>(words: &[&'a Word], inline: bool) -> Option<(Program, Vec<&'a Word>, bool)> {
    if words.first().is_some_and(|w| w.text == "cargo") {
        if words.get(1).is_none_or(|w| w.text != "run") {
            return None;
        }
        let mut program = None;
        let mut rest = words[2..].iter();
        while let Some(word) = rest.next() {
            match word.text.as_str() {
                "--" => break,
                "-p" | "--package" | "--bin" => program = rest.next().and_then(|w| Program::named(&w.text)),
                other => {
                    if let Some(name) = other.strip_prefix("--package=").or(other.strip_prefix("--bin=")) {
                        program = Program::named(name);
                    }
                }
            }
        }
        return program.map(|program| (program, rest.copied().collect(), true));
    }
    let at = if inline { 0 } else { words.iter().position(|w| invoked(&w.text).is_some())? };
    let program = invoked(&words.get(at)?.text)?;
    Some((program, words[at + 1..].to_vec(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> Vec<Page> {
        vec![Page { name: "p.md".into(), path: "p.md".into(), text: text.into() }]
    }

    fn args(text: &str) -> Vec<(Program, Result<Vec<String>, String>)> {
        commands(&page(text)).into_iter().map(|c| (c.program, c.args)).collect()
    }

    fn ok(program: Program, args: &[&str]) -> (Program, Result<Vec<String>, String>) {
        (program, Ok(args.iter().map(|a| a.to_string()).collect()))
    }

    #[test]
    fn reads_the_shell_the_pages_use() {
        let text = r#"```sh
cargo run --release -p offload-compute                     # 127.0.0.1:50051
OTEL_SERVICE_NAME=offload-gateway cargo run --release -p offload-gateway -- --listen 127.0.0.1:0
cargo build --release -p offload-bench -p offload-compute
  "$R/offload-bench" load --insecure 127.0.0.1:50360 -d '{"n":200000}' \
    -n "$1" -c 1 -O json --quiet > /tmp/calls.json || return 1
valgrind --tool=callgrind target/release/offload-compute --listen 127.0.0.1:0 &
offload-bench stall --target HOST:PORT -d '{json}' \
    [-c 8] [--probe health|package.Service/Method] [--json out.json]
offload-bench load --call "$METHOD" x 2>/dev/null | tail -1
OFFLOAD_COMPUTE_WORKERS=2 offload-compute
```
"#;
        assert_eq!(
            args(text),
            [
                ok(Program::Compute, &[]),
                ok(Program::Gateway, &["--listen", "127.0.0.1:0"]),
                ok(
                    Program::Bench,
                    &[
                        "load",
                        "--insecure",
                        "127.0.0.1:50360",
                        "-d",
                        r#"{"n":200000}"#,
                        "-n",
                        "2",
                        "-c",
                        "1",
                        "-O",
                        "json",
                        "--quiet"
                    ]
                ),
                ok(Program::Compute, &["--listen", "127.0.0.1:0"]),
                ok(
                    Program::Bench,
                    &[
                        "stall",
                        "--target",
                        "127.0.0.1:50051",
                        "-d",
                        "{json}",
                        "-c",
                        "8",
                        "--probe",
                        "health",
                        "--json",
                        "out.json"
                    ]
                ),
                (Program::Bench, Err("the variable $METHOD".to_string())),
                (
                    Program::Compute,
                    Err("OFFLOAD_COMPUTE_WORKERS=2 sets a setting through the environment, which is not parsed here"
                        .to_string())
                ),
            ]
        );
    }

    #[test]
    fn spans_count_when_they_are_whole_command_lines() {
        let text = "Run `offload-bench load` with `offload-bench load -n 5 x`, or \
                    `cargo run -p offload-bench -- <command>`, `CARGO_HOME=<empty> cargo run -p offload-bench -- compare`; \
                    not `cargo bench -p offload-compute`, nor a log \
                    `runtime=offload-compute worker=1`.\n\n```text\nWARN runtime=offload-compute thread=\"offload-compute (tid 1)\n```\n";
        assert_eq!(
            args(text),
            [
                ok(Program::Bench, &["load", "-n", "5", "x"]),
                (Program::Bench, Err("the placeholder <command>".to_string())),
                ok(Program::Bench, &["compare"]),
            ]
        );
    }
}
