//! Unwinding a copied stack into its frames' addresses, on the watchdog thread.
//!
//! The stuck thread only copies its registers and stack; the unwinding happens here, with framehop and the
//! modules' own DWARF CFI (`.eh_frame`), so it needs neither frame pointers nor anything from the stuck thread but
//! the copy: every stack read is served from the copy, and a read outside it ends the walk. The modules are loaded
//! at the first unwind, and looked up again (once per unwind) when an address lies outside all of them, as after a
//! `dlopen`. Only x86_64 Linux is unwound; elsewhere the stack is its instruction pointer alone.

use super::StackCopy;

/// Turns stack copies into frame addresses, keeping the modules' unwind tables and framehop's rule cache between
/// unwinds.
#[derive(Default)]
pub(crate) struct Unwinder {
    /// Nothing is read until the first unwind: a process that never stalls never pays for the tables.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    loaded: Option<x86_64::Loaded>,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder").finish_non_exhaustive()
    }
}

impl Unwinder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The addresses of the copied stack's frames, innermost first: the instruction pointer, then the return
    /// addresses, at most `max_frames` of them. The walk stops early at the stack's root, at a read outside the
    /// copy, or where the unwind tables give out; what was found up to there is returned.
    pub(crate) fn unwind(&mut self, copy: &StackCopy<'_>, max_frames: usize) -> Vec<u64> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            self.loaded.get_or_insert_with(x86_64::Loaded::new).unwind(copy, max_frames)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            let mut frames = vec![copy.regs.ip];
            frames.truncate(max_frames);
            frames
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64 {
    use framehop::{
        ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
        x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
    };

    use super::super::{
        StackCopy,
        modules::{LoadedModule, ModuleList},
    };

    /// The modules as framehop knows them, and its cache of unwind rules by address.
    pub(super) struct Loaded {
        modules: ModuleList,
        unwinder: UnwinderX86_64<Vec<u8>>,
        cache: CacheX86_64,
    }

    impl Loaded {
        pub(super) fn new() -> Self {
            let modules = ModuleList::current();
            let mut unwinder = UnwinderX86_64::new();
            for module in modules.iter() {
                unwinder.add_module(framehop_module(module));
            }
            Self { modules, unwinder, cache: CacheX86_64::new() }
        }

        pub(super) fn unwind(&mut self, copy: &StackCopy<'_>, max_frames: usize) -> Vec<u64> {
            let (frames, complete) = self.walk(copy, max_frames);
            if complete || !self.reload() {
                return frames;
            }
            self.walk(copy, max_frames).0
        }

        /// One walk of the copy; also says whether every frame lay in a known module.
        fn walk(&mut self, copy: &StackCopy<'_>, max_frames: usize) -> (Vec<u64>, bool) {
            let mut read_stack = |address: u64| read_copy(copy, address);
            let regs = UnwindRegsX86_64::new(copy.regs.ip, copy.regs.sp, copy.regs.bp);
            let mut frames = self.unwinder.iter_frames(copy.regs.ip, regs, &mut self.cache, &mut read_stack);
            let mut addresses = Vec::new();
            let mut complete = true;
            while addresses.len() < max_frames {
                let Ok(Some(frame)) = frames.next() else { break };
                complete &= self.modules.find(frame.address_for_lookup()).is_some();
                addresses.push(match frame {
                    FrameAddress::InstructionPointer(ip) => ip,
                    FrameAddress::ReturnAddress(address) => address.get(),
                });
            }
            (addresses, complete)
        }

        /// Brings framehop's modules up to the process's: adds those loaded since, drops those unloaded. Says
        /// whether anything changed (if not, a second walk would find the same).
        fn reload(&mut self) -> bool {
            let current = ModuleList::current();
            let mut changed = false;
            for old in self.modules.iter() {
                if !current.iter().any(|module| module == old) {
                    self.unwinder.remove_module(old.avma.start);
                    changed = true;
                }
            }
            for new in current.iter() {
                if !self.modules.iter().any(|module| module == new) {
                    self.unwinder.add_module(framehop_module(new));
                    changed = true;
                }
            }
            self.modules = current;
            changed
        }
    }

    /// A word of the stuck thread's stack, from the copy only: the live stack may have moved on (or be gone).
    fn read_copy(copy: &StackCopy<'_>, address: u64) -> Result<u64, ()> {
        let offset = usize::try_from(address.checked_sub(copy.regs.sp).ok_or(())?).map_err(|_| ())?;
        let word = copy.bytes.get(offset..offset.checked_add(8).ok_or(())?).ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
    }

    /// framehop's view of a module: its `.eh_frame` (with the `.eh_frame_hdr` index where present). ELF addresses
    /// are relative to 0, so the base SVMA is 0 and the base AVMA the load bias.
    fn framehop_module(module: &LoadedModule) -> Module<Vec<u8>> {
        let mut info = ExplicitModuleSectionInfo::default();
        if let Some(sections) = module.unwind_sections() {
            let (eh_frame_hdr_svma, eh_frame_hdr) = sections.eh_frame_hdr.unzip();
            info = ExplicitModuleSectionInfo {
                text_svma: sections.text_svma,
                got_svma: sections.got_svma,
                eh_frame_svma: Some(sections.eh_frame_svma),
                eh_frame: Some(sections.eh_frame),
                eh_frame_hdr_svma,
                eh_frame_hdr,
                ..info
            };
        }
        Module::new(module.name.clone(), module.avma.clone(), module.bias, info)
    }
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    use super::{
        super::{Registers, Symbolizer},
        *,
    };

    /// Enough for the test's few dozen frames; a real capture takes what its budget allows.
    const COPY_BYTES: usize = 64 * 1024;

    /// Where the current thread's stack ends (its highest address), so the copy never reads past it.
    fn stack_top() -> u64 {
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read, and destroyed once.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
            let (mut base, mut size) = (std::ptr::null_mut(), 0);
            assert_eq!(libc::pthread_attr_getstack(&attr, &mut base, &mut size), 0);
            libc::pthread_attr_destroy(&mut attr);
            base as u64 + size as u64
        }
    }

    /// Copies the current thread's stack as the signal handler does: its registers here, and the memory from
    /// its stack pointer up.
    #[inline(never)]
    fn stallwatch_test_capture_point(copy: &mut Vec<u8>) -> Registers {
        let top = stack_top();
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers; touches no memory.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
                ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        let len = usize::try_from(top - sp).unwrap_or(COPY_BYTES).min(COPY_BYTES);
        // SAFETY: `sp .. sp + len` lies within this thread's own stack, below its top.
        copy.extend_from_slice(unsafe { std::slice::from_raw_parts(sp as *const u8, len) });
        std::hint::black_box(Registers { ip, sp, bp })
    }

    /// `depth` frames of its own above the capture, each kept (no tail call) by using the result after the call.
    #[inline(never)]
    fn nested(depth: usize, copy: &mut Vec<u8>) -> Registers {
        let regs = if depth == 0 { stallwatch_test_capture_point(copy) } else { nested(depth - 1, copy) };
        std::hint::black_box(regs)
    }

    #[test]
    fn unwinds_and_symbolizes_its_own_stack() {
        let mut bytes = Vec::with_capacity(COPY_BYTES);
        let regs = nested(5, &mut bytes);
        let copy = StackCopy { regs, bytes: &bytes };

        let addresses = Unwinder::new().unwind(&copy, 64);
        let frames = Symbolizer::new().symbolize(&addresses);

        let position = |name: &str| {
            frames.iter().position(|frame| frame.function.as_deref().is_some_and(|function| function.ends_with(name)))
        };
        let capture = position("::stallwatch_test_capture_point").expect("capture point frame");
        let nested = position("::nested").expect("nested frame");
        let test = position("::unwinds_and_symbolizes_its_own_stack").expect("test frame");
        assert!(capture < nested && nested < test, "{frames:#?}");
        assert_eq!(
            frames.iter().filter(|frame| frame.function.as_deref().is_some_and(|f| f.ends_with("::nested"))).count(),
            6
        );
        for frame in [&frames[capture], &frames[test]] {
            assert!(frame.file.as_deref().is_some_and(|file| file.ends_with("unwind.rs")), "{frame:?}");
            assert!(frame.line.is_some_and(|line| line > 0), "{frame:?}");
            assert!(frame.module.is_some(), "{frame:?}");
        }
    }

    #[test]
    fn garbage_gives_a_short_stack() {
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let code = garbage_gives_a_short_stack as *const () as u64;
        let cases = [
            Registers { ip: 0xdead, sp: 0x1000, bp: 0x2000 },
            Registers { ip: code, sp: 0x1000, bp: 0x1800 },
            Registers { ip: code + 3, sp: u64::MAX - 16, bp: u64::MAX },
            Registers { ip: u64::MAX, sp: 0, bp: 0 },
            Registers { ip: 0, sp: 8, bp: 16 },
        ];
        let mut unwinder = Unwinder::new();
        let mut symbolizer = Symbolizer::new();
        for regs in cases {
            for bytes in [&bytes[..], &[][..], &bytes[..7]] {
                let addresses = unwinder.unwind(&StackCopy { regs, bytes }, 16);
                assert!(!addresses.is_empty() && addresses.len() <= 16, "{regs:?}: {addresses:x?}");
                assert_eq!(addresses[0], regs.ip);
                assert!(symbolizer.symbolize(&addresses).len() >= addresses.len());
            }
        }
        assert!(unwinder.unwind(&StackCopy { regs: cases[0], bytes: &bytes }, 0).is_empty());
    }
}
