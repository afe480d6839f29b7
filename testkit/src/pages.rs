//! The user-facing Markdown pages (`README.md`, `docs/*.md`, each crate's `README.md`; not the lab notes in
//! `docs/log/` nor the decision records) read as GitHub renders them, for the checks that keep them true to the code:
//! their relative links and headings ([`Page::links`], [`Page::anchors`]), and the command lines they show
//! ([`commands`]).
//!
//! The Markdown is read by `pulldown-cmark` (CommonMark, the parser `prost-build` already builds), so fences of any
//! length, indented code, reference links and code spans in tables are seen as GitHub sees them.

pub mod commands;
mod shell;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// One page: its path from the workspace root (as messages name it) and its text.
#[derive(Debug)]
pub struct Page {
    pub name: String,
    pub path: PathBuf,
    pub text: String,
}

/// A relative or absolute link target as written (`../x.md#anchor`), and the line it is on.
#[derive(Debug)]
pub struct Link {
    pub line: usize,
    pub target: String,
}

/// A line of code on a page: a line of a code block (with the block's info string, `sh`, `text`, or empty), or
/// an inline code span (info `None`).
#[derive(Debug)]
pub struct CodeLine {
    pub line: usize,
    pub info: Option<String>,
    pub text: String,
}

/// The pages a user reads: `README.md`, `docs/*.md` and `*/README.md`, in that order.
pub fn user_pages(workspace: &Path) -> anyhow::Result<Vec<Page>> {
    let mut paths = vec![workspace.join("README.md")];
    let mut docs = markdown_in(&workspace.join("docs"))?;
    docs.sort();
    paths.extend(docs);
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(workspace)? {
        let readme = entry?.path().join("README.md");
        if readme.is_file() {
            crates.push(readme);
        }
    }
    crates.sort();
    paths.extend(crates);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let name = path.strip_prefix(workspace).unwrap_or(&path).display().to_string();
            Ok(Page { name, path, text })
        })
        .collect()
}

fn markdown_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    Ok(found)
}

impl Page {
    fn events(&self) -> impl Iterator<Item = (Event<'_>, std::ops::Range<usize>)> {
        Parser::new_ext(&self.text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).into_offset_iter()
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|&b| b == b'\n').count() + 1
    }

    /// Every link and image target on the page, outside code.
    pub fn links(&self) -> Vec<Link> {
        let mut links = Vec::new();
        for (event, range) in self.events() {
            if let Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) = event {
                links.push(Link { line: self.line_of(range.start), target: dest_url.to_string() });
            }
        }
        links
    }

    /// The anchors GitHub gives the page's headings: [`slug`] of each heading's text, a repeated one suffixed
    /// `-1`, `-2`, … in order.
    pub fn anchors(&self) -> Vec<String> {
        let mut anchors = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut heading: Option<String> = None;
        for (event, _) in self.events() {
            match event {
                Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
                Event::Text(text) | Event::Code(text) => {
                    if let Some(heading) = heading.as_mut() {
                        heading.push_str(&text);
                    }
                }
                Event::End(TagEnd::Heading(_)) => {
                    let base = slug(&heading.take().unwrap_or_default());
                    let count = seen.entry(base.clone()).or_insert(0);
                    anchors.push(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
                    *count += 1;
                }
                _ => {}
            }
        }
        anchors
    }

    /// Every line of every code block, and every inline code span, with its line on the page.
    pub fn code_lines(&self) -> Vec<CodeLine> {
        let mut lines = Vec::new();
        let mut block: Option<String> = None;
        for (event, range) in self.events() {
            match event {
                Event::Start(Tag::CodeBlock(kind)) => {
                    block = Some(match kind {
                        CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or("").to_string(),
                        CodeBlockKind::Indented => String::new(),
                    })
                }
                Event::End(TagEnd::CodeBlock) => block = None,
                Event::Text(text) if block.is_some() => {
                    let first = self.line_of(range.start);
                    for (i, text) in text.lines().enumerate() {
                        lines.push(CodeLine { line: first + i, info: block.clone(), text: text.to_string() });
                    }
                }
                Event::Code(text) => {
                    lines.push(CodeLine { line: self.line_of(range.start), info: None, text: text.to_string() })
                }
                _ => {}
            }
        }
        lines
    }
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept (of any script); spaces to `-`;
/// everything else dropped.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_as_github_makes_them() {
        assert_eq!(slug("Dashboard and alerts"), "dashboard-and-alerts");
        assert_eq!(
            slug("`offload-bench load`: calling any gRPC service"),
            "offload-bench-load-calling-any-grpc-service"
        );
        assert_eq!(slug("Why 64 in flight? (a → b)"), "why-64-in-flight-a--b");
        assert_eq!(slug("snake_case Über"), "snake_case-über");
    }

    #[test]
    fn reads_links_anchors_and_code_with_their_lines() {
        let text = "# Top `x`\n\nSee [a](a.md#b) and `offload-bench load -n 1`.\n\n## Top x\n\n~~~sh\none\ntwo \\\n  three\n~~~\n\n    indented\n";
        let page = Page { name: "p.md".into(), path: "p.md".into(), text: text.into() };
        assert_eq!(page.anchors(), ["top-x", "top-x-1"]);
        let links = page.links();
        assert_eq!((links[0].line, links[0].target.as_str()), (3, "a.md#b"));
        let code: Vec<_> = page.code_lines().into_iter().map(|c| (c.line, c.info, c.text)).collect();
        assert_eq!(
            code,
            [
                (1, None, "x".to_string()),
                (3, None, "offload-bench load -n 1".to_string()),
                (8, Some("sh".to_string()), "one".to_string()),
                (9, Some("sh".to_string()), "two \\".to_string()),
                (10, Some("sh".to_string()), "  three".to_string()),
                (13, Some(String::new()), "indented".to_string()),
            ]
        );
    }
}
