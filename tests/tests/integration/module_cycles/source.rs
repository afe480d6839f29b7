//! The source side of the module-cycle check: a Rust file with its comments and literals blanked out, cut into
//! tokens, and read for the two things the check needs (the child module files it declares and the paths it
//! names), each path made absolute from the crate root. A line scan, not a parser: see the parent module for what
//! it does not see.

/// `mod name;` in a file.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) name: String,
    /// The inline modules it is declared in (`mod a { mod b; }`: `["a"]`).
    pub(super) inline: Vec<String>,
    /// Under `#[cfg(test)]`.
    pub(super) test: bool,
    pub(super) path_attr: Option<String>,
}

/// What one file declares and names: its child module files, and each absolute path it names with its line.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) children: Vec<Child>,
    pub(super) names: Vec<(Vec<String>, usize)>,
}

/// A token of blanked source: an identifier (or `::`, `{`, `}`, `,`, `;`, `*`, …) and its line.
type Token<'a> = (&'a str, usize);

/// The tokens of `code` (already blanked) of a module at `path`: child declarations and the paths it names.
pub(super) fn scan(code: &str, path: &[String]) -> Scan {
    let tokens = tokenize(code);
    let mut scan = Scan::default();
    // Inline modules open around the current token: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (token, line) = tokens[i];
        let here: Vec<String> = path.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
        match token {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if i + 2 < tokens.len() && is_ident(tokens[i + 1].0) => {
                let name = tokens[i + 1].0.to_owned();
                if tokens[i + 2].0 == "{" {
                    inline.push((name, depth + 1));
                } else if tokens[i + 2].0 == ";" {
                    let attrs = attributes_before(&tokens, i);
                    let test = attrs.windows(4).any(|w| w == ["cfg", "(", "test", ")"]);
                    let path_attr = attrs.windows(3).find(|w| w[0] == "path" && w[1] == "=").map(|w| w[2].to_owned());
                    scan.children.push(Child {
                        name,
                        inline: inline.iter().map(|(m, _)| m.clone()).collect(),
                        test,
                        path_attr: path_attr.map(|p| p.trim_matches('"').to_owned()),
                    });
                }
                i += 2;
                continue;
            }
            "use" => {
                let end = tokens[i..].iter().position(|t| t.0 == ";").map_or(tokens.len(), |p| i + p);
                let mut paths = Vec::new();
                use_tree(&tokens[i + 1..end], &[], &mut paths);
                let children = children_here(&scan.children, &inline);
                for relative in paths {
                    if let Some(absolute) = resolve(&relative, &here, &children) {
                        scan.names.push((absolute, line));
                    }
                }
                i = end;
                continue;
            }
            _ if is_ident(token) && (i == 0 || tokens[i - 1].0 != "::") => {
                let mut relative = vec![token.to_owned()];
                let mut j = i + 1;
                while j + 1 < tokens.len() && tokens[j].0 == "::" && is_ident(tokens[j + 1].0) {
                    relative.push(tokens[j + 1].0.to_owned());
                    j += 2;
                }
                if relative.len() > 1 {
                    if let Some(absolute) = resolve(&relative, &here, &children_here(&scan.children, &inline)) {
                        scan.names.push((absolute, line));
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// The names of the child module files declared so far at this level of inline modules.
fn children_here(children: &[Child], inline: &[(String, usize)]) -> Vec<String> {
    let inline: Vec<&String> = inline.iter().map(|(m, _)| m).collect();
    children.iter().filter(|c| c.inline.iter().collect::<Vec<_>>() == inline).map(|c| c.name.clone()).collect()
}

/// The tokens of the attributes (`#[…]`) just before token `at`, flattened.
fn attributes_before<'a>(tokens: &[Token<'a>], at: usize) -> Vec<&'a str> {
    let mut start = at;
    // Skip a visibility: `pub`, `pub(crate)`, `pub(super)`.
    while start > 0 && matches!(tokens[start - 1].0, "pub" | "(" | ")" | "crate" | "super" | "self" | "in") {
        start -= 1;
    }
    let mut attrs = Vec::new();
    while start >= 2 && tokens[start - 1].0 == "]" {
        let open = (0..start - 1).rev().find(|&k| tokens[k].0 == "#" && tokens[k + 1].0 == "[");
        let Some(open) = open else { break };
        attrs.splice(0..0, tokens[open..start].iter().map(|t| t.0));
        start = open;
    }
    attrs
}

/// Expands a `use` tree (`crate::{a::B, c::{self, D}}`) into its paths.
fn use_tree(tokens: &[Token], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].0 {
            "::" => {}
            "{" => {
                let close = matching_brace(tokens, i);
                for group in split_top_level(&tokens[i + 1..close]) {
                    use_tree(group, &path, out);
                }
                return;
            }
            "as" => break,
            "*" => break,
            "self" if !path.is_empty() => {}
            t if is_ident(t) => path.push(t.to_owned()),
            _ => {}
        }
        i += 1;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

fn matching_brace(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.0 {
            "{" => depth += 1,
            "}" if depth == 1 => return k,
            "}" => depth -= 1,
            _ => {}
        }
    }
    tokens.len()
}

/// The comma-separated items of a `use` group, nested groups kept whole.
fn split_top_level<'a, 'b>(tokens: &'b [Token<'a>]) -> Vec<&'b [Token<'a>]> {
    let (mut groups, mut depth, mut start) = (Vec::new(), 0, 0);
    for (k, t) in tokens.iter().enumerate() {
        match t.0 {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                groups.push(&tokens[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    groups.push(&tokens[start..]);
    groups.into_iter().filter(|g| !g.is_empty()).collect()
}

/// `relative`, named in module `here` (which declares `children`), as a path from the crate root; `None` for
/// paths into other crates (and for `Self::…`, generics' `T::…`, enum variants …, which name no module here).
fn resolve(relative: &[String], here: &[String], children: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = relative;
    match relative.first()?.as_str() {
        "crate" | "$crate" => {
            base.clear();
            rest = &relative[1..];
        }
        "self" => rest = &relative[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        first if children.iter().any(|c| c == first) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
}

/// Splits blanked code into identifiers (with a leading `$` for macro variables), `::`, and single characters.
fn tokenize(code: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'"' {
            // `"` only survives blanking as the (empty) quotes of a literal: `#[path = "…"]` keeps its text.
            let start = i;
            if c == b'"' {
                i += 1 + code[i + 1..].find('"').map_or(0, |p| p + 1);
                line += code[start..i].matches('\n').count();
            } else {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            tokens.push((&code[start..i], line));
        } else if code[i..].starts_with("::") {
            tokens.push(("::", line));
            i += 2;
        } else {
            let len = code[i..].chars().next().map_or(1, char::len_utf8);
            tokens.push((&code[i..i + len], line));
            i += len;
        }
    }
    tokens
}

/// `text` with comments and the insides of string and character literals replaced by spaces (newlines kept, so
/// lines still count), except `#[path = "…"]`'s string, which says where a module's file is.
pub(super) fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |s: &[char]| s.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }).collect::<String>();
    while i < chars.len() {
        let rest = &chars[i..];
        let starts = |p: &str| rest.iter().take(p.len()).copied().eq(p.chars());
        let end = if starts("//") {
            i + rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if starts("/*") {
            i + 2 + rest[2..].windows(2).position(|w| w == ['*', '/']).map_or(rest.len() - 2, |p| p + 2)
        } else if (starts("r\"") || starts("r#") || starts("br\"") || starts("br#"))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // Raw strings: r"…", r#"…"#, with as many # as opened them.
            let open = rest.iter().position(|&c| c == '"').unwrap_or(0);
            let hashes: String = rest[..open].iter().filter(|&&c| c == '#').collect();
            if !rest[..open].iter().all(|&c| c == 'r' || c == 'b' || c == '#') || (open == 0) {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let close: Vec<char> = format!("\"{hashes}").chars().collect();
            let body = &rest[open + 1..];
            i + open
                + 1
                + body.windows(close.len()).position(|w| w == close.as_slice()).map_or(body.len(), |p| p + close.len())
        } else if chars[i] == '"' {
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '"' {
                k += if chars[k] == '\\' { 2 } else { 1 };
            }
            let literal: String = chars[i..=k.min(chars.len() - 1)].iter().collect();
            if out.trim_end().ends_with("path =") || out.trim_end().ends_with("path=") {
                out.push_str(&literal);
            } else {
                out.push('"');
                out.push_str(&keep_newlines(&chars[i + 1..k.min(chars.len())]));
                out.push('"');
            }
            i = k + 1;
            continue;
        } else if chars[i] == '\'' && rest.len() > 3 && rest[1] == '\\' {
            // An escaped character literal ('\n', '\'', '\u{…}'): its closing quote comes after the escaped one.
            i + 3 + rest[3..].iter().position(|&c| c == '\'').map_or(rest.len() - 3, |p| p + 1)
        } else if chars[i] == '\'' && rest.len() > 2 && rest[2] == '\'' {
            // A character literal ('x'); anything else after a quote is a lifetime.
            i + 3
        } else {
            out.push(chars[i]);
            i += 1;
            continue;
        };
        out.push_str(&keep_newlines(&chars[i..end.min(chars.len())]));
        i = end;
    }
    out
}
