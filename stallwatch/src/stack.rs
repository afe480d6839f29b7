//! The stuck thread's stack: what the watchdog hands the unwinder (registers and a copy of the stack the stuck
//! thread made of itself, see [`crate::capture`]), and what comes back (frames with names, and lines where the
//! binary has line tables).

mod modules;
mod symbolize;
mod unwind;

pub(crate) use self::{symbolize::Symbolizer, unwind::Unwinder};

/// The registers an unwind starts from, as the stuck thread's signal handler read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    /// The instruction pointer (`rip`).
    pub ip: u64,
    /// The stack pointer (`rsp`): the copy's first byte is the memory at this address.
    pub sp: u64,
    /// The frame pointer (`rbp`), for frames without unwind information.
    pub bp: u64,
}

/// A copy of a thread's stack, from its stack pointer up (towards the stack's base), possibly cut short.
#[derive(Debug, Clone, Copy)]
pub struct StackCopy<'a> {
    pub regs: Registers,
    /// The memory at `regs.sp .. regs.sp + bytes.len()`.
    pub bytes: &'a [u8],
}

/// One frame of a symbolized stack, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    /// The frame's address: the instruction pointer for the innermost frame, else the return address minus one
    /// (inside the call instruction, so the line is the call's).
    pub address: u64,
    /// The demangled function name without its hash (`offload_compute::kernel::sum_of_squares`), if the module has
    /// a symbol for it. A frame the line tables show inlined into another gets a frame of its own.
    pub function: Option<String>,
    /// The source file, where the module has line tables.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The file name of the module (`offload-compute`, `libc.so.6`).
    pub module: Option<String>,
}
