//! Naming the frames of an unwound stack: function, source line and module, on the watchdog thread.
//!
//! Each address is looked up in the module that holds it, in the module's own file: the DWARF line tables where it
//! has them (the dev profile's `line-tables-only`), which also give the functions inlined at that address as frames
//! of their own; else its symbol table, which the release profile keeps (`debug = false` strips only debug
//! sections), and a stripped library's dynamic symbols. A module's tables are loaded at its first address and kept.
//! Return addresses are looked up one byte back, inside their call instruction, so a frame's line is its call's.
//! Names are demangled without their hash (`offload_compute::kernel::sum_of_squares`).

use std::collections::HashMap;

use addr2line::Loader;
use object::{Object, ReadRef};

use super::{
    Frame,
    modules::{LoadedModule, ModuleImage, ModuleList},
};

/// Names addresses of this process, keeping each module's tables between calls.
#[derive(Default)]
pub(crate) struct Symbolizer {
    /// Listed at the first call, again when an address lies outside all of them (a library `dlopen`ed since).
    modules: Option<ModuleList>,
    /// Each module's tables by where it is loaded, with the module they were read for (another library may be
    /// loaded at the same place after a `dlclose`).
    tables: HashMap<u64, (LoadedModule, Tables)>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer").field("modules_loaded", &self.tables.len()).finish_non_exhaustive()
    }
}

/// What a module's file gives to name its addresses.
enum Tables {
    /// DWARF, with the symbol table for what it does not cover (addr2line reads both).
    Debug(Box<Loader>),
    /// Only symbols: a module without a readable file (the vDSO) or whose DWARF does not parse.
    Symbols(SymbolTable),
}

impl Symbolizer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The frames of an unwound stack (the instruction pointer first, then return addresses), innermost first:
    /// one per address, more where the line tables show functions inlined there. An address no module holds, or
    /// that no table names, still gets its frame, with what is known of it.
    pub(crate) fn symbolize(&mut self, addresses: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addresses.len());
        let mut reloaded = false;
        for (position, &address) in addresses.iter().enumerate() {
            let lookup = if position == 0 { address } else { address.saturating_sub(1) };
            let mut module = self.modules.get_or_insert_with(ModuleList::current).find(lookup);
            if module.is_none() && !reloaded {
                reloaded = true;
                let current = ModuleList::current();
                module = current.find(lookup);
                self.modules = Some(current);
            }
            let module = module.and_then(|index| self.modules.as_ref()?.get(index)).cloned();
            match module {
                Some(module) => self.symbolize_in(&module, lookup, &mut frames),
                None => frames.push(Frame { address: lookup, function: None, file: None, line: None, module: None }),
            }
        }
        frames
    }

    fn symbolize_in(&mut self, module: &LoadedModule, address: u64, frames: &mut Vec<Frame>) {
        let cached = self.tables.get(&module.avma.start).is_some_and(|(loaded_for, _)| loaded_for == module);
        if !cached {
            self.tables.insert(module.avma.start, (module.clone(), Tables::load(&module.image)));
        }
        let Some((_, tables)) = self.tables.get(&module.avma.start) else { return };
        let probe = address.wrapping_sub(module.bias);
        let frame = |function: Option<String>, file: Option<String>, line: Option<u32>| Frame {
            address,
            function,
            file,
            line,
            module: Some(module.name.clone()),
        };
        let first = frames.len();
        match tables {
            Tables::Debug(loader) => {
                if let Ok(mut inlined) = loader.find_frames(probe) {
                    while let Ok(Some(found)) = inlined.next() {
                        let function =
                            found.function.as_ref().and_then(|name| name.raw_name().ok()).map(|raw| demangle(&raw));
                        let (file, line) =
                            found.location.map_or((None, None), |at| (at.file.map(str::to_owned), at.line));
                        frames.push(frame(function, file, line));
                    }
                }
                // Code without line tables (the dependencies in a dev build): the symbol table names it. It also
                // names the outermost frame of an inlined chain when the DWARF name is bare (`line-tables-only`
                // keeps `nested`, not the linkage name's `crate::module::nested`); inlined frames have only that.
                let symbol = loader.find_symbol(probe).map(demangle);
                match frames[first..].last_mut() {
                    None => frames.push(frame(symbol, None, None)),
                    Some(outermost) => outermost.function = qualified(outermost.function.take(), symbol),
                }
            }
            Tables::Symbols(symbols) => frames.push(frame(symbols.find(probe).map(demangle), None, None)),
        }
    }
}

impl Tables {
    fn load(image: &ModuleImage) -> Self {
        match image {
            ModuleImage::File(path) => match Loader::new(path) {
                Ok(loader) => Self::Debug(Box::new(loader)),
                Err(_) => Self::Symbols(
                    std::fs::File::open(path)
                        .map(|file| SymbolTable::read(&object::ReadCache::new(file)))
                        .unwrap_or_default(),
                ),
            },
            ModuleImage::Memory(bytes) => Self::Symbols(SymbolTable::read(&**bytes)),
        }
    }
}

/// A module's symbols, owned, sorted by address.
#[derive(Debug, Default)]
struct SymbolTable {
    /// Address, size (0 if the table does not say), name.
    symbols: Vec<(u64, u64, String)>,
}

impl SymbolTable {
    /// The symbol table, or the dynamic one if the file has none; empty if the file does not parse.
    fn read<'data, R: ReadRef<'data>>(data: R) -> Self {
        let Ok(file) = object::File::parse(data) else { return Self::default() };
        let map = file.symbol_map();
        let symbols = map.symbols().iter().map(|symbol| (symbol.address(), symbol.size(), symbol.name().to_owned()));
        Self { symbols: symbols.collect() }
    }

    /// The name of the symbol that covers `svma`, as addr2line's lookup in a file's own table finds it.
    fn find(&self, svma: u64) -> Option<&str> {
        let after = self.symbols.partition_point(|(address, _, _)| *address <= svma);
        let (address, size, name) = self.symbols.get(after.checked_sub(1)?)?;
        (*size == 0 || svma - address < *size).then_some(name.as_str())
    }
}

/// The better of a frame's DWARF name and its symbol's: the symbol's where the DWARF name is bare and the symbol
/// names the same function with its path (`nested` against `stallwatch::stack::tests::nested`), else the DWARF's
/// (a stripped file's nearest dynamic symbol may be another function).
fn qualified(dwarf: Option<String>, symbol: Option<String>) -> Option<String> {
    match (dwarf, symbol) {
        (Some(dwarf), Some(symbol)) => {
            let base = dwarf.split('<').next().unwrap_or_default();
            let bare = !base.is_empty() && !base.contains("::");
            Some(if bare && symbol.contains(base) { symbol } else { dwarf })
        }
        (dwarf, symbol) => dwarf.or(symbol),
    }
}

/// A symbol's readable name: Rust names demangled without their hash (`{:#}`), others as they are.
fn demangle(raw: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(raw))
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn names_an_address_inside_libc() {
        // SAFETY: a NUL-terminated name looked up in the modules already loaded.
        let entry = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"clock_nanosleep".as_ptr()) } as u64;
        assert_ne!(entry, 0);
        // The second address is a return address: looked up one byte back, so inside too.
        let frames = Symbolizer::new().symbolize(&[entry + 1, entry + 9]);
        assert_eq!(frames.len(), 2, "{frames:#?}");
        for (frame, address) in frames.iter().zip([entry + 1, entry + 8]) {
            assert_eq!(frame.address, address);
            assert_eq!(frame.module.as_deref(), Some("libc.so.6"), "{frame:?}");
            assert!(frame.function.as_deref().is_some_and(|name| name.contains("nanosleep")), "{frame:?}");
        }
    }

    #[test]
    fn names_a_function_of_this_binary_without_its_hash() {
        let address = names_a_function_of_this_binary_without_its_hash as *const () as u64;
        let frames = Symbolizer::new().symbolize(&[address]);
        let function = frames.last().and_then(|frame| frame.function.as_deref()).expect("named");
        assert!(function.ends_with("::tests::names_a_function_of_this_binary_without_its_hash"), "{function}");
        assert!(frames.iter().all(|frame| frame.address == address));
    }

    #[test]
    fn unknown_addresses_get_bare_frames() {
        let frames = Symbolizer::new().symbolize(&[0, 1, u64::MAX]);
        let bare = |address| Frame { address, function: None, file: None, line: None, module: None };
        assert_eq!(frames, [bare(0), bare(0), bare(u64::MAX - 1)]);
    }

    #[test]
    fn symbolizer_and_unwinder_move_to_the_watchdog_thread() {
        fn send<T: Send>() {}
        send::<Symbolizer>();
        send::<super::super::Unwinder>();
    }
}
