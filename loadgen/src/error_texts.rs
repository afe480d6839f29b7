//! The error texts a run keeps, bounded by what the report shows, not by what the server sends: each distinct
//! text is stored once and shared by every call that saw it (a `grpc-message` repeated 20 000 times is one
//! allocation), at most [`MAX_DISTINCT`] of them are kept, each cut to [`MAX_BYTES`]; the calls whose text came
//! after the first [`MAX_DISTINCT`] are counted, and their distinct texts counted by hash ([`MAX_COUNTED`] at
//! most), so the report can say "N more distinct". One set is shared by all the recordings of a run
//! ([`crate::recording::Recording::sharing`]), so the bound holds for the run, whatever the number of workers.

use std::{
    borrow::Cow,
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

/// Distinct error texts kept per run (each an error-distribution line, and the text of its calls in
/// `details[]`): past a hundred, an error distribution is not read line by line. A hundred at [`MAX_BYTES`] is
/// 100 KiB, shared by the run's calls; each closed-loop worker's own distribution holds a copy of the lines it
/// saw, so a run keeps at most (1 + workers) × 100 KiB of error text.
pub const MAX_DISTINCT: usize = 100;
/// Bytes of one kept text at most: a `grpc-message` is meant to be a line; a longer one is cut, saying how long
/// it was.
pub const MAX_BYTES: usize = 1_024;
/// Distinct texts past [`MAX_DISTINCT`] counted at most (8 bytes each: 8 MiB).
pub const MAX_COUNTED: usize = 1 << 20;

/// The kept texts of one run.
#[derive(Debug)]
pub struct ErrorTexts {
    kept: HashSet<Arc<str>>,
    /// Hashes of the distinct texts not kept.
    beyond: HashSet<u64>,
    hasher: RandomState,
    /// What a call whose text was not kept shows in `details[]`.
    not_kept: Arc<str>,
}

impl Default for ErrorTexts {
    fn default() -> Self {
        Self {
            kept: HashSet::new(),
            beyond: HashSet::new(),
            hasher: RandomState::new(),
            not_kept: Arc::from(format!(
                "(not kept: one of the distinct error messages past the first {MAX_DISTINCT})"
            )),
        }
    }
}

impl ErrorTexts {
    /// `text` (already [`cut`]) stored once: the shared copy, or `None` past [`MAX_DISTINCT`] (then counted).
    pub fn intern(&mut self, text: &str) -> Option<Arc<str>> {
        if let Some(kept) = self.kept.get(text) {
            return Some(Arc::clone(kept));
        }
        if self.kept.len() < MAX_DISTINCT {
            let kept: Arc<str> = Arc::from(text);
            self.kept.insert(Arc::clone(&kept));
            return Some(kept);
        }
        if self.beyond.len() < MAX_COUNTED {
            self.beyond.insert(self.hasher.hash_one(text));
        }
        None
    }

    /// Distinct texts seen past [`MAX_DISTINCT`] (up to [`MAX_COUNTED`]).
    pub fn distinct_beyond(&self) -> usize {
        self.beyond.len()
    }

    /// What `details[]` shows for a call whose text was not kept.
    pub fn not_kept(&self) -> Arc<str> {
        Arc::clone(&self.not_kept)
    }
}

/// `text` cut to [`MAX_BYTES`] (at a character boundary), saying how long it was.
pub fn cut(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_BYTES {
        return Cow::Borrowed(text);
    }
    let end = (0..=MAX_BYTES).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    Cow::Owned(format!("{}… (cut: {} bytes in all)", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_once_at_most_max_distinct_the_rest_counted() {
        let mut texts = ErrorTexts::default();
        let a = texts.intern("busy").expect("kept");
        let b = texts.intern("busy").expect("kept");
        assert!(Arc::ptr_eq(&a, &b), "one allocation per distinct text");
        for i in 1..MAX_DISTINCT {
            assert!(texts.intern(&format!("unique {i}")).is_some());
        }
        assert!(texts.intern("one too many").is_none());
        assert!(texts.intern("one too many").is_none());
        assert!(texts.intern("two too many").is_none());
        assert_eq!(texts.distinct_beyond(), 2);
        assert!(texts.intern("busy").is_some(), "kept texts stay kept");
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_BYTES);
        let cut = cut(&long);
        assert!(
            cut.len() < MAX_BYTES + 40 && cut.ends_with(&format!("(cut: {} bytes in all)", 2 * MAX_BYTES)),
            "{cut}"
        );
    }
}
