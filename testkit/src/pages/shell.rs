//! The shell as far as the pages' command lines use it: words with quotes and escapes, `# comments`, the operators
//! that separate simple commands (`|`, `||`, `&&`, `;`, `&`), redirections (dropped with their targets), `$VAR`s and
//! `<placeholder>`s (given a value from [`PLACEHOLDERS`] or marked unknown), and a synopsis's optional parts
//! (`[--rps 200]`, `[--probe health|METHOD]`: the first alternative). No crate splits shell words *and* operators
//! (`shlex` and `shell-words` read words only), hence this small reader.

/// Values for the variables and placeholders the pages' commands use: what the surrounding text says they stand for.
pub(crate) const PLACEHOLDERS: &[(&str, &str)] = &[
    // docs/api.md's script: its call count argument, and the hop compression it loops over.
    ("$1", "2"),
    ("$N", "20"),
    ("$hop", "gzip"),
    // The sharded runs' loop over shard indexes, and the start time they share (RFC 3339).
    ("$i", "1"),
    ("$AT", "2026-12-07T12:00:00Z"),
    ("HOST:PORT", "127.0.0.1:50051"),
    ("127.0.0.1:PORT", "127.0.0.1:50051"),
    ("ADDR", "127.0.0.1:50051"),
];

/// One shell word, with why it cannot be known (a variable or placeholder with no value in [`PLACEHOLDERS`], a
/// command substitution).
#[derive(Debug, Default)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) unresolved: Option<String>,
}

/// A command line split into simple commands (at `|`, `||`, `&&`, `;`, `&`), each a list of words, redirections
/// and comments dropped.
pub(super) fn split(line: &str) -> Result<Vec<Vec<Word>>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut commands = vec![Vec::new()];
    let mut word: Option<Word> = None;
    let mut redirect = false;
    let mut optional = false;
    let mut i = 0;
    let end_word = |word: &mut Option<Word>, redirect: &mut bool, commands: &mut Vec<Vec<Word>>| {
        if let Some(w) = word.take() {
            if std::mem::take(redirect) {
                return;
            }
            if let Some(command) = commands.last_mut() {
                command.push(w);
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => end_word(&mut word, &mut redirect, &mut commands),
            '#' if word.is_none() => break,
            '\'' => {
                let close = chars[i + 1..].iter().position(|&c| c == '\'').ok_or("an unclosed '")?;
                word.get_or_insert_default().text.extend(&chars[i + 1..i + 1 + close]);
                i += close + 1;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("an unclosed \"".into()),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            word.get_or_insert_default().text.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = variable(&chars, i, word.get_or_insert_default()),
                        Some(&c) => {
                            word.get_or_insert_default().text.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    word.get_or_insert_default().text.push(next);
                }
                i += 1;
            }
            '$' => {
                i = variable(&chars, i, word.get_or_insert_default());
                continue;
            }
            '`' => return Err("a command substitution".into()),
            '[' if word.is_none() && chars.get(i + 1) == Some(&'-') => optional = true,
            ']' if optional => {
                optional = false;
                end_word(&mut word, &mut redirect, &mut commands);
            }
            '|' if optional => {
                // `[--probe health|METHOD]`: the first alternative.
                end_word(&mut word, &mut redirect, &mut commands);
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                optional = false;
            }
            '<' if placeholder(&chars[i..]).is_some() => {
                let len = placeholder(&chars[i..]).unwrap_or(0);
                let name: String = chars[i..i + len].iter().collect();
                let w = word.get_or_insert_default();
                match lookup(&name) {
                    Some(value) => w.text.push_str(value),
                    None => {
                        w.text.push_str(&name);
                        w.unresolved = Some(format!("the placeholder {name}"));
                    }
                }
                i += len;
                continue;
            }
            '>' | '<' => {
                if word.as_ref().is_some_and(|w| w.text.chars().all(|c| c.is_ascii_digit())) {
                    word = None;
                } else {
                    end_word(&mut word, &mut redirect, &mut commands);
                }
                while matches!(chars.get(i + 1), Some('>' | '&')) {
                    i += 1;
                }
                redirect = true;
                // `>&2`: the descriptor is the target, read as the next word.
            }
            '|' | '&' | ';' => {
                end_word(&mut word, &mut redirect, &mut commands);
                while matches!(chars.get(i + 1), Some('|' | '&')) {
                    i += 1;
                }
                commands.push(Vec::new());
            }
            '(' | ')' if word.is_none() => return Err("a subshell".into()),
            c => word.get_or_insert_default().text.push(c),
        }
        i += 1;
    }
    end_word(&mut word, &mut redirect, &mut commands);
    commands.retain(|c| !c.is_empty());
    // Whole-word placeholders written bare (`HOST:PORT`).
    for word in commands.iter_mut().flatten() {
        if word.unresolved.is_none()
            && let Some(value) = lookup(&word.text)
        {
            word.text = value.to_string();
        }
    }
    Ok(commands)
}

/// The length of a `<placeholder>` at the start of `chars`.
fn placeholder(chars: &[char]) -> Option<usize> {
    let close = chars.iter().position(|&c| c == '>')?;
    let inner = &chars[1..close];
    (inner.first().is_some_and(|c| c.is_alphanumeric())
        && inner.iter().all(|&c| c.is_alphanumeric() || " _-.:".contains(c)))
    .then_some(close + 1)
}

fn lookup(name: &str) -> Option<&'static str> {
    PLACEHOLDERS.iter().find(|(key, _)| *key == name).map(|(_, value)| *value)
}

/// Reads `$NAME`, `${NAME}`, `$1` or `$!` at `chars[at]` into `word`; returns the index after it.
fn variable(chars: &[char], at: usize, word: &mut Word) -> usize {
    let mut end = at + 1;
    let name: String = match chars.get(end) {
        Some('(') => {
            word.unresolved = Some("a command substitution".into());
            return chars.len();
        }
        Some('{') => {
            let close = chars[end..].iter().position(|&c| c == '}').map_or(chars.len(), |p| end + p);
            let name = chars[end + 1..close.min(chars.len())].iter().collect();
            end = close + 1;
            name
        }
        Some(c) if c.is_ascii_digit() || "!?#@*$".contains(*c) => {
            end += 1;
            c.to_string()
        }
        _ => {
            while chars.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                end += 1;
            }
            chars[at + 1..end].iter().collect()
        }
    };
    let key = format!("${name}");
    match lookup(&key) {
        Some(value) => word.text.push_str(value),
        None => {
            word.text.push_str(&key);
            word.unresolved.get_or_insert(format!("the variable {key}"));
        }
    }
    end
}
