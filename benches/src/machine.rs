//! Facts about the machine and the installed extension, for the report.

use std::path::{Path, PathBuf};

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpu_model(&t))
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Total memory from /proc/meminfo, as "23 GiB".
pub fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{} GiB", (kib + 512 * 1024) / 1024 / 1024))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Whether an ELF file has a `.debug_info` section: a debug build of the extension has one,
/// a release build (cargo strips debug info when the profile has none) does not.
pub fn has_debug_info(path: &Path) -> Option<bool> {
    let data = std::fs::read(path).ok()?;
    elf_section_names(&data).map(|names| names.iter().any(|n| n == ".debug_info"))
}

/// The section names of a 64-bit little-endian ELF file.
fn elf_section_names(data: &[u8]) -> Option<Vec<String>> {
    if data.get(0..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| -> Option<usize> {
        Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |o: usize| -> Option<usize> {
        Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize)
    };
    let u64_at = |o: usize| -> Option<usize> {
        Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?) as usize)
    };
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3A)?;
    let shnum = u16_at(0x3C)?;
    let shstrndx = u16_at(0x3E)?;
    let section = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(section(shstrndx) + 0x18)?;
    let mut names = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let name_off = strtab + u32_at(section(i))?;
        let rest = data.get(name_off..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_line() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(text).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("nothing"), None);
    }

    #[test]
    fn reads_elf_section_names() {
        // The test binary itself is an ELF file with a symbol table.
        let exe = std::env::current_exe().unwrap();
        let names = elf_section_names(&std::fs::read(exe).unwrap()).unwrap();
        assert!(names.iter().any(|n| n == ".text"), "{names:?}");
        assert_eq!(elf_section_names(b"not an elf file"), None);
    }
}
