//! The modules loaded in this process (the executable, its shared libraries, the vDSO), where each is mapped, and
//! the parts of their ELF files the unwinder and the symbolizer read.
//!
//! Both work on a copy of a stack taken in this very process, so the module list is this process's own
//! (`dl_iterate_phdr`), and a stack's addresses map back to files by each module's load bias. The files are read
//! where the dynamic loader found them, except the executable, which is opened through `/proc/self/exe` (the inode
//! that runs, even if a deploy has replaced the file since), and the vDSO, which has no file and is copied from
//! memory. A library replaced on disk after it was loaded is read as the new file: its unwind rules and names may
//! then be wrong, never unsafe. Only 64-bit Linux is listed (elsewhere the list is empty and frames go unnamed).

use std::{ops::Range, path::PathBuf, sync::Arc};

use object::{Object, ObjectSection, ReadCache, ReadRef};

/// Where a module's ELF image is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleImage {
    /// A file on disk (read lazily, only the sections needed).
    File(PathBuf),
    /// A copy of an image that exists only in memory (the vDSO).
    #[cfg_attr(not(all(target_os = "linux", target_pointer_width = "64")), allow(dead_code))]
    Memory(Arc<[u8]>),
}

/// One module mapped in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedModule {
    /// The module's file name (`offload-compute`, `libc.so.6`, `linux-vdso.so.1`), as a frame shows it.
    pub(crate) name: String,
    pub(crate) image: ModuleImage,
    /// What the loader added to the file's addresses: a runtime address minus this is the address in the ELF file
    /// (the SVMA, which symbol tables and DWARF use).
    pub(crate) bias: u64,
    /// The runtime addresses its loadable segments cover.
    pub(crate) avma: Range<u64>,
}

/// The modules of this process, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct ModuleList {
    modules: Vec<LoadedModule>,
}

impl ModuleList {
    /// The modules loaded now.
    pub(crate) fn current() -> Self {
        let mut modules = enumerate();
        modules.sort_by_key(|module| module.avma.start);
        Self { modules }
    }

    /// The index of the module whose segments hold `address`.
    pub(crate) fn find(&self, address: u64) -> Option<usize> {
        let after = self.modules.partition_point(|module| module.avma.start <= address);
        let index = after.checked_sub(1)?;
        self.modules[index].avma.contains(&address).then_some(index)
    }

    pub(crate) fn get(&self, index: usize) -> Option<&LoadedModule> {
        self.modules.get(index)
    }

    #[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LoadedModule> {
        self.modules.iter()
    }
}

/// What framehop needs of a module to unwind through it with the module's DWARF CFI. Addresses are SVMAs (the
/// file's own), as framehop takes them with a base SVMA of 0 for ELF.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct UnwindSections {
    pub(crate) text_svma: Option<Range<u64>>,
    pub(crate) got_svma: Option<Range<u64>>,
    pub(crate) eh_frame_svma: Range<u64>,
    pub(crate) eh_frame: Vec<u8>,
    pub(crate) eh_frame_hdr: Option<(Range<u64>, Vec<u8>)>,
}

#[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
impl LoadedModule {
    /// Reads the module's unwind sections: `None` if its image can't be read or has no `.eh_frame` (the unwinder
    /// then falls back to frame pointers in it).
    pub(crate) fn unwind_sections(&self) -> Option<UnwindSections> {
        match &self.image {
            ModuleImage::File(path) => {
                let file = std::fs::File::open(path).ok()?;
                // Only the sections asked for are read, not the whole (possibly large) file.
                read_unwind_sections(&ReadCache::new(file))
            }
            ModuleImage::Memory(bytes) => read_unwind_sections(&**bytes),
        }
    }
}

#[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
fn read_unwind_sections<'data, R: ReadRef<'data>>(data: R) -> Option<UnwindSections> {
    let file = object::File::parse(data).ok()?;
    let range =
        |section: &object::Section<'data, '_, R>| section.address()..section.address().saturating_add(section.size());
    let svma = |name: &str| file.section_by_name(name).map(|section| range(&section));
    let eh_frame = file.section_by_name(".eh_frame")?;
    let eh_frame_hdr = file.section_by_name(".eh_frame_hdr").and_then(|section| {
        let data = section.data().ok()?;
        Some((range(&section), data.to_vec()))
    });
    Some(UnwindSections {
        text_svma: svma(".text"),
        got_svma: svma(".got"),
        eh_frame_svma: range(&eh_frame),
        eh_frame: eh_frame.data().ok()?.to_vec(),
        eh_frame_hdr,
    })
}

/// The name a path's module goes by: its file name.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(|| path.to_string_lossy().into_owned(), |name| name.to_string_lossy().into_owned())
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn enumerate() -> Vec<LoadedModule> {
    use std::{ffi::CStr, os::raw::c_void, os::unix::ffi::OsStrExt, path::Path};

    /// What the callback keeps of each module; files are named and read after the loader's lock is released.
    struct Raw {
        name: Vec<u8>,
        bias: u64,
        avma: Range<u64>,
        /// Where the ELF header is mapped (the segment at file offset 0), to recognise the vDSO.
        header: Option<u64>,
    }

    unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> libc::c_int {
        // SAFETY: `data` is the `Vec<Raw>` passed to `dl_iterate_phdr` below, and `info` points at a valid entry
        // (with `dlpi_phnum` program headers) for the duration of this call.
        let (raws, info) = unsafe { (&mut *data.cast::<Vec<Raw>>(), &*info) };
        let name = if info.dlpi_name.is_null() {
            Vec::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes().to_vec()
        };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader's program headers for this module, `dlpi_phnum` of them.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let bias = info.dlpi_addr;
        let mut avma: Option<Range<u64>> = None;
        let mut header = None;
        for phdr in phdrs.iter().filter(|phdr| phdr.p_type == libc::PT_LOAD) {
            let start = bias.wrapping_add(phdr.p_vaddr);
            let end = start.saturating_add(phdr.p_memsz);
            if phdr.p_offset == 0 {
                header = Some(start);
            }
            avma = Some(match avma {
                Some(range) => range.start.min(start)..range.end.max(end),
                None => start..end,
            });
        }
        if let Some(avma) = avma {
            raws.push(Raw { name, bias, avma, header });
        }
        0
    }

    let mut raws: Vec<Raw> = Vec::new();
    // SAFETY: `collect` only reads the entries it is handed and pushes to `raws`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&raw mut raws).cast::<c_void>()) };

    // SAFETY: `getauxval` has no preconditions; 0 means the process has no vDSO.
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    let mut modules = Vec::with_capacity(raws.len());
    let mut seen_executable = false;
    for raw in raws {
        let image = if vdso != 0 && raw.header == Some(vdso) {
            match vdso_image(vdso) {
                Some(bytes) => ModuleImage::Memory(bytes),
                None => continue,
            }
        } else if raw.name.is_empty() && !seen_executable {
            // The loader lists the executable first, without a name.
            seen_executable = true;
            ModuleImage::File(PathBuf::from("/proc/self/exe"))
        } else if raw.name.is_empty() {
            continue;
        } else {
            ModuleImage::File(PathBuf::from(std::ffi::OsStr::from_bytes(&raw.name)))
        };
        let name = match &image {
            ModuleImage::File(path) if path == Path::new("/proc/self/exe") => std::fs::read_link(path)
                .map(|target| file_name(&target).trim_end_matches(" (deleted)").to_owned())
                .unwrap_or_else(|_| "exe".to_owned()),
            ModuleImage::File(path) => file_name(path),
            ModuleImage::Memory(_) => String::from_utf8_lossy(&raw.name).into_owned(),
        };
        modules.push(LoadedModule { name, image, bias: raw.bias, avma: raw.avma });
    }
    modules
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn enumerate() -> Vec<LoadedModule> {
    Vec::new()
}

/// A copy of the vDSO's image, made once: the kernel maps it for the life of the process and never moves it.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn vdso_image(start: u64) -> Option<Arc<[u8]>> {
    static IMAGE: std::sync::OnceLock<Option<Arc<[u8]>>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| copy_vdso(start)).clone()
}

/// The kernel maps the vDSO whole (ELF header, sections and their headers) at `start`, as the `[vdso]` line of
/// `/proc/self/maps` shows.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn copy_vdso(start: u64) -> Option<Arc<[u8]>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|line| line.ends_with("[vdso]"))?;
    let (range, _) = line.split_once(' ')?;
    let (from, to) = range.split_once('-')?;
    let from = u64::from_str_radix(from, 16).ok()?;
    let to = u64::from_str_radix(to, 16).ok()?;
    // The vDSO is a page or a few; anything else is not the mapping we think it is.
    if from != start || to <= from || to - from > 1 << 20 {
        return None;
    }
    let len = usize::try_from(to - from).ok()?;
    // SAFETY: the vDSO mapping is readable for the life of the process, and `from..to` is exactly that mapping.
    let bytes = unsafe { std::slice::from_raw_parts(from as *const u8, len) };
    Some(Arc::from(bytes))
}
