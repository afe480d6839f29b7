//! No cycles between the modules of any workspace crate (STYLE.md, habit 17): if two files need each other, the type
//! they share belongs to the one that owns it, or to a small module both use.
//!
//! The check reads the source, not the compiler's view of it: from each crate root under a member's `src/`
//! (`lib.rs`, `main.rs`, `bin/*.rs`) it follows `mod name;` to the files (`name.rs`, `name/mod.rs`, `#[path]`),
//! blanks out comments and literals, and reads the paths each file names: `crate::…`, `self::…`, `super::…`, and
//! those that start with a child module's name, in `use` trees (`use crate::{a::B, c::{D, E}}`) and in code alike.
//! Each path counts as an edge to the deepest module file it reaches (`crate::a::b::Item` → `a::b` when `a/b.rs`
//! exists, else `a`), so a module naming its own submodule, or an item its parent defines, depends on that module.
//! A test module (`#[cfg(test)] mod …;`, or a child called `tests`) is part of the module it tests: tests may use
//! their parent. Inline `mod x { … }` blocks are part of their file too, with `super::` resolved from inside them.
//! Macros that build paths, and paths written as `pub(in crate::x)`, are not seen: a simple scan, kept honest by
//! the test that it finds a cycle in a crate made for it.

mod source;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use self::source::{blank, scan};

/// One module file of a crate: its path from the crate root (`[]` for the root) and what it names.
#[derive(Debug)]
struct ModuleFile {
    path: Vec<String>,
    file: PathBuf,
    /// Where each module this one names is first named (module path → line).
    names: BTreeMap<Vec<String>, usize>,
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    let mut modules = 0;
    for member in members(&workspace) {
        for root in crate_roots(&workspace.join(&member).join("src")) {
            let files = module_files(&root);
            modules += files.len();
            let src = workspace.join(&member).join("src");
            let crate_name = root.strip_prefix(&src).unwrap_or(&root).display().to_string();
            found.extend(cycles(&files, &src).into_iter().map(|cycle| format!("{member}/src/{crate_name}: {cycle}")));
        }
    }
    assert!(modules > 50, "read only {modules} modules: is the workspace layout still the one this test expects?");
    assert!(found.is_empty(), "modules that import each other (STYLE.md, habit 17):\n{}", found.join("\n"));
}

#[test]
fn finds_the_cycles_in_a_crate_made_with_them() {
    let dir = std::env::temp_dir().join(format!("offload-module-cycles-{}", std::process::id()));
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    };
    write("lib.rs", "mod a;\nmod b;\nmod p;\nmod r;\nmod t;\nmod x;\npub use a::A;\n");
    // a ↔ b, b's half from an inline module; a's tests may use a.
    write("a.rs", "use crate::{b::{self, B}, x};\npub struct A;\n#[cfg(test)]\nmod tests;\n");
    write("a/tests.rs", "use super::*;\n");
    write(
        "b.rs",
        "//! Not crate::a in a comment, nor in \"crate::a\".\npub struct B(pub inner::I);\nmod inner {\n    pub struct I(super::super::a::A);\n}\n",
    );
    write("x.rs", "pub fn f() { let _ = crate::p::P; let _ = '{'; }\n");
    // A parent and its children naming each other is no cycle.
    write("p.rs", "mod c;\nmod d;\npub struct P;\nfn f() { c::f() }\n");
    write("p/c.rs", "use super::{P, d::D};\npub fn f() {}\n");
    write("p/d.rs", "pub struct D(super::P);\n");
    // r's child names t, and t names an item of r's own file: r ↔ t.
    write("r.rs", "mod s;\npub struct R;\n");
    write("r/s.rs", "fn f() { crate::t::f() }\n");
    write("t.rs", "pub fn f() { let _ = crate::r::R; }\n");
    let files = module_files(&dir.join("lib.rs"));
    let found = cycles(&files, &dir);
    fs::remove_dir_all(&dir).ok();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("a -> b -> a (a.rs:1 names b; b.rs:4 names a)"), "{found:#?}");
    assert!(found[1].starts_with("r -> t -> r (r/s.rs:1 names t; t.rs:1 names r)"), "{found:#?}");
}

/// The workspace's members, from the root `Cargo.toml`'s `members = [...]`.
fn members(workspace: &Path) -> Vec<String> {
    let manifest = fs::read_to_string(workspace.join("Cargo.toml")).expect("read Cargo.toml");
    let list = manifest.split_once("members = [").expect("members").1.split_once(']').expect("]").0;
    list.split(',').map(|m| m.trim().trim_matches('"').to_owned()).filter(|m| !m.is_empty()).collect()
}

/// The crate roots under `src`: the library, the binary, and each of `bin/`.
fn crate_roots(src: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|f| f.is_file()).collect();
    if let Ok(bins) = fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = bins.map(|e| e.expect("entry").path()).collect();
        bins.sort();
        for bin in bins {
            roots.push(if bin.is_dir() { bin.join("main.rs") } else { bin });
        }
    }
    roots
}

/// Every module file reachable from `root`, keyed by module path; test modules are folded into their parent.
fn module_files(root: &Path) -> BTreeMap<Vec<String>, ModuleFile> {
    let mut files = BTreeMap::new();
    let mut pending = vec![(Vec::new(), root.to_path_buf(), root.parent().expect("src").to_path_buf(), None)];
    while let Some((path, file, children_dir, tested)) = pending.pop() {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let scan = scan(&blank(&text), &path);
        for child in &scan.children {
            let mut child_path = path.clone();
            child_path.extend(child.inline.iter().cloned());
            child_path.push(child.name.clone());
            let dir = child.inline.iter().fold(children_dir.clone(), |dir, m| dir.join(m));
            let child_file = match &child.path_attr {
                Some(p) if child.inline.is_empty() => file.parent().expect("dir").join(p),
                Some(p) => dir.join(p),
                None if dir.join(format!("{}.rs", child.name)).is_file() => dir.join(format!("{}.rs", child.name)),
                None => dir.join(&child.name).join("mod.rs"),
            };
            let grandchildren = if child_file.ends_with("mod.rs") || child.path_attr.is_some() {
                child_file.parent().expect("dir").to_path_buf()
            } else {
                dir.join(&child.name)
            };
            // A test module's names count as its parent's.
            let tests = tested.is_some() || child.test || child.name == "tests";
            let owner = tested.clone().unwrap_or_else(|| path.clone());
            pending.push((child_path, child_file, grandchildren, tests.then_some(owner)));
        }
        let owner = tested.unwrap_or_else(|| path.clone());
        let entry = files.entry(owner.clone()).or_insert_with(|| ModuleFile {
            path: owner,
            file: file.clone(),
            names: BTreeMap::new(),
        });
        for (named, line) in scan.names {
            entry.names.entry(named).or_insert(line);
        }
    }
    files
}

/// The longest prefix of `path` that is a module file of `files`.
fn module_of<'a>(files: &'a BTreeMap<Vec<String>, ModuleFile>, path: &[String]) -> Option<&'a ModuleFile> {
    (0..=path.len()).rev().find_map(|n| files.get(&path[..n]))
}

/// Each cycle between sibling modules of `files` (whole subtrees: `a/x.rs` naming `b` is `a` naming `b`), one line
/// per strongly connected set: the modules around it and where each first names the next.
///
/// A module and its own descendants are one unit here: a child sees its parent's private items, and a parent that
/// wires its children together while they use its types (`html.rs` ↔ `html/chart.rs`) is Rust's usual layout, not
/// two concepts cut in the wrong place. Cycles between siblings are, at any depth.
fn cycles(files: &BTreeMap<Vec<String>, ModuleFile>, src: &Path) -> Vec<String> {
    let name = |path: &[String]| path.join("::");
    // Sibling → sibling, with where the first such naming is (`file:line`).
    let mut edges: BTreeMap<&[String], BTreeMap<&[String], String>> = BTreeMap::new();
    for module in files.values() {
        for (named, line) in &module.names {
            let Some(target) = module_of(files, named) else { continue };
            let (from, to) = (&module.path, &target.path);
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // the same module, or one nested in the other
            }
            let file = module.file.strip_prefix(src).unwrap_or(&module.file).display();
            edges
                .entry(&from[..=common])
                .or_default()
                .entry(&to[..=common])
                .or_insert_with(|| format!("{file}:{line}"));
        }
    }
    let mut reported = BTreeSet::new();
    let mut found = Vec::new();
    // For each module, the shortest way back to it (breadth first); each set of modules is reported once.
    for &start in edges.keys() {
        let mut came_from: BTreeMap<&[String], &[String]> = BTreeMap::new();
        let mut frontier = vec![start];
        let mut back = None;
        'search: while !frontier.is_empty() {
            let mut next = Vec::new();
            for from in frontier {
                for &to in edges.get(from).into_iter().flat_map(BTreeMap::keys) {
                    if to == start {
                        back = Some(from);
                        break 'search;
                    }
                    if !came_from.contains_key(to) {
                        came_from.insert(to, from);
                        next.push(to);
                    }
                }
            }
            frontier = next;
        }
        let Some(mut last) = back else { continue };
        let mut cycle = vec![start];
        while last != start {
            cycle.insert(1, last);
            last = came_from[last];
        }
        if !reported.insert(cycle.iter().copied().collect::<BTreeSet<_>>()) {
            continue;
        }
        let arrows: Vec<String> = cycle.iter().chain([&start]).map(|m| name(m)).collect();
        let evidence: Vec<String> = (0..cycle.len())
            .map(|k| {
                let (from, to) = (cycle[k], cycle[(k + 1) % cycle.len()]);
                format!("{} names {}", edges[from][to], name(to))
            })
            .collect();
        found.push(format!("{} ({})", arrows.join(" -> "), evidence.join("; ")));
    }
    found
}
